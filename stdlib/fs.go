package stdlib

import (
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// fs: read(path) -> string | nil, err; write(path, data) -> true | nil,
// err (mode 0644); exists(path) -> bool; glob(pattern) -> list. Local files
// only: use launcher.exec for files on other machines.
func fsLoader(L *lua.LState) int {
	fail := func(L *lua.LState, err error) int {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	m := L.NewTable()
	L.SetFuncs(m, map[string]lua.LGFunction{
		"read": func(L *lua.LState) int {
			b, err := os.ReadFile(host.Str(L, 1))
			if err != nil {
				return fail(L, err)
			}
			L.Push(lua.LString(b))
			return 1
		},
		"write": func(L *lua.LState) int {
			if err := os.WriteFile(host.Str(L, 1), []byte(host.Str(L, 2)), 0o644); err != nil {
				return fail(L, err)
			}
			L.Push(lua.LTrue)
			return 1
		},
		"exists": func(L *lua.LState) int {
			_, err := os.Stat(host.Str(L, 1))
			L.Push(lua.LBool(err == nil))
			return 1
		},
		"glob": func(L *lua.LState) int {
			matches, err := filepath.Glob(host.Str(L, 1))
			if err != nil {
				return fail(L, err)
			}
			t := L.CreateTable(len(matches), 0)
			for i, p := range matches {
				t.RawSetInt(i+1, lua.LString(p))
			}
			L.Push(t)
			return 1
		},
	})
	L.Push(m)
	return 1
}
