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
	"strings"

	lua "github.com/yuin/gopher-lua"

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
	"json": {"encode", "decode"},
	"http": {"get", "post"},
	"net":  {"tcp_open"},
	"fs":   {"read", "write", "exists", "glob"},
	"time": {"now", "format", "since"},
	"re":   {"match", "find", "gsub"},
	"log":  {"info", "warn", "error"},
}

// shim wraps a Go primitive that returns an operation id into a Lua
// function that waits for it: waits must be Lua calls (see lua/host).
func shim(L *lua.LState, prim lua.LGFunction, what string) *lua.LFunction {
	fn, err := L.Load(strings.NewReader(`local prim, what = ... return function(...) return __await(prim(...), what) end`), "[launcher]")
	if err != nil {
		panic(err)
	}
	L.Push(fn)
	L.Push(L.NewFunction(prim))
	L.Push(lua.LString(what))
	L.Call(2, 1)
	f := L.Get(-1).(*lua.LFunction)
	L.Pop(1)
	return f
}

// Shim is shim for other packages (lua/binding).
func Shim(L *lua.LState, prim lua.LGFunction, what string) *lua.LFunction { return shim(L, prim, what) }
