// Package stdlib is the Lua standard library of launcher: Go-implemented
// modules that scripts and plugins `require` (json, http, net, fs, time, re,
// log), the built-in ready-check kinds written in Lua, and the LuaLS type
// stubs of the whole API. Blocking calls go through the host's Async, so
// they wait without blocking other tasks and end on Ctrl-C or a timeout.
package stdlib

import (
	"embed"
	"io"
	"os"

	"github.com/robotlauncher/launcher/lua/host"
)

// Lua holds the modules written in Lua (checks.lua) and the LuaLS stubs
// (types/*.lua).
//
//go:embed lua/*.lua types/*.lua
var Lua embed.FS

// Options configure the library.
type Options struct {
	// Log receives log lines (default: stderr).
	Log io.Writer
}

// Preload registers every module for `require` in rt.
func Preload(rt *host.Runtime, o Options) {
	if o.Log == nil {
		o.Log = os.Stderr
	}
	L := rt.L
	L.PreloadModule("json", jsonLoader)
	L.PreloadModule("http", httpLoader(rt))
	L.PreloadModule("net", netLoader(rt))
	L.PreloadModule("fs", fsLoader)
	L.PreloadModule("time", timeLoader)
	L.PreloadModule("re", reLoader)
	L.PreloadModule("log", logLoader(o.Log))
}

// Modules lists the module names Preload registers, with their Go
// functions (for the stub test).
var Modules = map[string][]string{
	"json": {"encode", "decode", "array"},
	"http": {"get", "post"},
	"net":  {"tcp_open"},
	"fs":   {"read", "write", "exists", "glob"},
	"time": {"now", "format", "since", "monotonic"},
	"re":   {"match", "find", "gsub"},
	"log":  {"info", "warn", "error"},
}
