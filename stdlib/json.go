package stdlib

import (
	"encoding/json"
	"sort"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// json: encode(value [, {indent = true}]) -> string | nil, err;
// decode(string) -> value | nil, err; array([t]) -> t, marked a list (an
// empty one encodes as []). Arrays are tables with keys 1..n,
// objects tables with string keys; JSON null becomes nil.
func jsonLoader(L *lua.LState) int {
	m := L.NewTable()
	L.SetFuncs(m, map[string]lua.LGFunction{
		"encode": func(L *lua.LState) int {
			o := host.CheckOptions(L, 2, "indent")
			v, err := host.FromLua(L.CheckAny(1))
			if err != nil {
				L.Push(lua.LNil)
				L.Push(lua.LString(err.Error()))
				return 2
			}
			var b []byte
			if host.OptBool(L, o, "indent") {
				b, err = json.MarshalIndent(sorted(v), "", "  ")
			} else {
				b, err = json.Marshal(sorted(v))
			}
			if err != nil {
				L.Push(lua.LNil)
				L.Push(lua.LString(err.Error()))
				return 2
			}
			L.Push(lua.LString(b))
			return 1
		},
		// array(t) marks t as a list, so an empty one encodes as [] (an
		// empty table is {} otherwise); it returns t.
		"array": func(L *lua.LState) int {
			t := L.OptTable(1, L.NewTable())
			host.MarkList(L, t)
			L.Push(t)
			return 1
		},
		"decode": func(L *lua.LState) int {
			var v any
			if err := json.Unmarshal([]byte(host.Str(L, 1)), &v); err != nil {
				L.Push(lua.LNil)
				L.Push(lua.LString("invalid JSON: " + err.Error()))
				return 2
			}
			L.Push(host.ToLua(L, v))
			return 1
		},
	})
	L.Push(m)
	return 1
}

// sorted makes map encoding deterministic (encoding/json sorts map keys
// already; this converts nested values).
func sorted(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(x))
		for _, k := range keys {
			out[k] = sorted(x[k])
		}
		return out
	case []any:
		for i := range x {
			x[i] = sorted(x[i])
		}
	}
	return v
}
