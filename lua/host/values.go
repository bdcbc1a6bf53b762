package host

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// ToLua converts a Go value (nil, bool, numbers, string, time, slices,
// string-keyed maps) to a Lua value. Call it on the owner goroutine.
func ToLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case lua.LValue:
		return x
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case []byte:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case *int:
		if x == nil {
			return lua.LNil
		}
		return lua.LNumber(*x)
	case time.Time:
		return lua.LNumber(float64(x.UnixNano()) / 1e9)
	case time.Duration:
		return lua.LNumber(x.Seconds())
	case []string:
		t := L.CreateTable(len(x), 0)
		for i, s := range x {
			t.RawSetInt(i+1, lua.LString(s))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			t.RawSetInt(i+1, ToLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, ToLua(L, e))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}

// FromLua converts a Lua value to Go (tables with keys 1..n become []any,
// others map[string]any); cycles and functions are errors.
func FromLua(v lua.LValue) (any, error) {
	return fromLua(v, 0)
}

func fromLua(v lua.LValue, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("table nests too deeply (a cycle?)")
	}
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return f, nil
	case lua.LString:
		return string(x), nil
	case *lua.LTable:
		data, list, ok := viewOf(x)
		if ok {
			if list && data.Len() == 0 {
				return []any{}, nil // an empty list stays a list in JSON
			}
			x = data
		} else if list && x.Len() == 0 {
			return []any{}, nil // json.array
		}
		n := x.Len()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if n > 0 && n == count {
			out := make([]any, n)
			for i := 1; i <= n; i++ {
				e, err := fromLua(x.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				out[i-1] = e
			}
			return out, nil
		}
		out := map[string]any{}
		var ferr error
		x.ForEach(func(k, val lua.LValue) {
			if ferr != nil {
				return
			}
			ks, ok := k.(lua.LString)
			if !ok {
				if kn, ok := k.(lua.LNumber); ok {
					ks = lua.LString(kn.String())
				} else {
					ferr = fmt.Errorf("table keys must be strings or numbers, not %s", k.Type())
					return
				}
			}
			e, err := fromLua(val, depth+1)
			if err != nil {
				ferr = err
				return
			}
			out[string(ks)] = e
		})
		return out, ferr
	}
	return nil, fmt.Errorf("cannot convert a %s", v.Type())
}

// CheckOptions reads the optional options table at argument n, refusing keys
// that are not in allowed: a typo is an error naming the caller's
// file:line, never silently ignored.
func CheckOptions(L *lua.LState, n int, allowed ...string) *lua.LTable {
	v := L.Get(n)
	if v == lua.LNil {
		return L.NewTable()
	}
	t, ok := v.(*lua.LTable)
	if !ok {
		ArgError(L, n, "options must be a table, not "+v.Type().String())
		return nil
	}
	ok2 := map[string]bool{}
	for _, a := range allowed {
		ok2[a] = true
	}
	var bad []string
	t.ForEach(func(k, _ lua.LValue) {
		if ks, isStr := k.(lua.LString); !isStr || !ok2[string(ks)] {
			bad = append(bad, k.String())
		}
	})
	if len(bad) > 0 {
		sort.Strings(bad)
		Raise(L, "unknown option %s (known: %s)", strings.Join(bad, ", "), strings.Join(allowed, ", "))
	}
	return t
}

// OptDuration reads a number of seconds (0 when absent).
func OptDuration(L *lua.LState, t *lua.LTable, key string) time.Duration {
	v := t.RawGetString(key)
	switch x := v.(type) {
	case *lua.LNilType:
		return 0
	case lua.LNumber:
		if x < 0 {
			Raise(L, "option %s must not be negative", key)
		}
		return time.Duration(float64(x) * float64(time.Second))
	}
	Raise(L, "option %s must be a number of seconds, not %s", key, v.Type())
	return 0
}

// OptString reads a string option ("" when absent).
func OptString(L *lua.LState, t *lua.LTable, key string) string {
	v := t.RawGetString(key)
	switch x := v.(type) {
	case *lua.LNilType:
		return ""
	case lua.LString:
		return string(x)
	}
	Raise(L, "option %s must be a string, not %s", key, v.Type())
	return ""
}

// OptBool reads a boolean option (false when absent).
func OptBool(L *lua.LState, t *lua.LTable, key string) bool {
	v := t.RawGetString(key)
	switch x := v.(type) {
	case *lua.LNilType:
		return false
	case lua.LBool:
		return bool(x)
	}
	Raise(L, "option %s must be true or false, not %s", key, v.Type())
	return false
}

// OptStrings reads a list of strings option.
func OptStrings(L *lua.LState, t *lua.LTable, key string) []string {
	v := t.RawGetString(key)
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LString:
		return []string{string(x)}
	case *lua.LTable:
		var out []string
		for i := 1; i <= x.Len(); i++ {
			s, ok := x.RawGetInt(i).(lua.LString)
			if !ok {
				Raise(L, "option %s must be a list of strings", key)
			}
			out = append(out, string(s))
		}
		return out
	}
	Raise(L, "option %s must be a list of strings, not %s", key, v.Type())
	return nil
}

// Raise raises a Lua error that names the script's file:line: the first
// frame outside launcher's own Lua (whose chunks are named "[launcher…]").
func Raise(L *lua.LState, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if pos := UserWhere(L); pos != "" {
		msg = pos + " " + msg
	}
	L.Error(lua.LString(msg), 0)
}

// UserWhere is "file:line:" of the innermost frame of the user's code. It
// looks through the threads that resumed this one too: under the
// coroutine-based pcall, pcall(launcher.start, 42) runs in a thread of its
// own whose only frames are launcher's.
func UserWhere(L *lua.LState) string {
	for l := L; l != nil; l = l.Parent {
		for i := 0; i < 32; i++ {
			dbg, ok := l.GetStack(i)
			if !ok {
				break
			}
			if _, err := l.GetInfo("Sl", dbg, lua.LNil); err != nil {
				continue
			}
			if dbg.CurrentLine > 0 && !strings.HasPrefix(dbg.Source, "[launcher") {
				return fmt.Sprintf("%s:%d:", dbg.Source, dbg.CurrentLine)
			}
		}
	}
	return ""
}

// ArgError raises "bad argument #n: msg" at the user's file:line.
func ArgError(L *lua.LState, n int, msg string) { Raise(L, "bad argument #%d: %s", n, msg) }

// Str checks that argument n is a string (numbers are converted).
func Str(L *lua.LState, n int) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	}
	ArgError(L, n, "string expected, got "+L.Get(n).Type().String())
	return ""
}

// Num checks that argument n is a number.
func Num(L *lua.LState, n int) float64 {
	if v, ok := L.Get(n).(lua.LNumber); ok {
		return float64(v)
	}
	ArgError(L, n, "number expected, got "+L.Get(n).Type().String())
	return 0
}

// Func checks that argument n is a function.
func Func(L *lua.LState, n int) *lua.LFunction {
	if v, ok := L.Get(n).(*lua.LFunction); ok {
		return v
	}
	ArgError(L, n, "function expected, got "+L.Get(n).Type().String())
	return nil
}

// Read-only views (launcher.config) keep their data in their metatable:
// the standard functions that read tables raw (next, unpack, table.concat,
// json.encode, a route's answer) read it there (prelude.lua, FromLua).
const (
	viewData = "__launcher_data"
	viewList = "__launcher_list"
)

// ReadOnly returns a view of t that refuses writes and that pairs, ipairs,
// #, next, unpack, table.concat and FromLua (so json.encode) read as t.
// list marks a list, so an empty one is [] in JSON, not {}.
func ReadOnly(L *lua.LState, t *lua.LTable, list bool) *lua.LTable {
	proxy := L.NewTable()
	mt := L.NewTable()
	mt.RawSetString(viewData, t)
	if list {
		mt.RawSetString(viewList, lua.LTrue)
	}
	mt.RawSetString("__index", t)
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		Raise(L, "launcher.config is read-only")
		return 0
	}))
	mt.RawSetString("__len", L.NewFunction(func(L *lua.LState) int { L.Push(lua.LNumber(t.Len())); return 1 }))
	// Iteration sees the real table (pairs and ipairs honour these).
	next := L.GetGlobal("next")
	mt.RawSetString("__pairs", L.NewFunction(func(L *lua.LState) int {
		L.Push(next)
		L.Push(t)
		L.Push(lua.LNil)
		return 3
	}))
	mt.RawSetString("__ipairs", L.NewFunction(func(L *lua.LState) int {
		L.Push(L.NewFunction(func(L *lua.LState) int {
			i := L.CheckInt(2) + 1
			v := t.RawGetInt(i)
			if v == lua.LNil {
				return 0
			}
			L.Push(lua.LNumber(i))
			L.Push(v)
			return 2
		}))
		L.Push(t)
		L.Push(lua.LNumber(0))
		return 3
	}))
	L.SetMetatable(proxy, mt)
	return proxy
}

// viewOf returns the data of a ReadOnly view, and whether t (a view, or a
// table json.array marked) is a list.
func viewOf(t *lua.LTable) (data *lua.LTable, list, ok bool) {
	mt, isTable := t.Metatable.(*lua.LTable)
	if !isTable {
		return nil, false, false
	}
	data, ok = mt.RawGetString(viewData).(*lua.LTable)
	return data, mt.RawGetString(viewList) == lua.LTrue, ok
}

// MarkList marks t as a list for FromLua: empty, it is [] in JSON, not {}
// (json.array). A table with a metatable of its own is left as it is.
func MarkList(L *lua.LState, t *lua.LTable) {
	if t.Metatable != lua.LNil && t.Metatable != nil {
		return // a class's metatable is shared: not ours to change
	}
	mt := L.NewTable()
	mt.RawSetString(viewList, lua.LTrue)
	L.SetMetatable(t, mt)
}
