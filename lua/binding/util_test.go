package binding

import lua "github.com/yuin/gopher-lua"

type luaState = lua.LState

func lnum(i int) lua.LValue { return lua.LNumber(i) }
