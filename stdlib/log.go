package stdlib

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// log: info/warn/error(format, ...) write one timestamped line, formatted
// like string.format.
func logLoader(w io.Writer) lua.LGFunction {
	return func(L *lua.LState) int {
		L.Push(LogTable(L, w))
		return 1
	}
}

var logMu sync.Mutex

// LogTable builds the log functions writing to w (also launcher.log).
func LogTable(L *lua.LState, w io.Writer) *lua.LTable {
	m := L.NewTable()
	for _, level := range []string{"info", "warn", "error"} {
		m.RawSetString(level, L.NewFunction(func(L *lua.LState) int {
			msg := host.Str(L, 1)
			if L.GetTop() > 1 {
				checkFormatArgs(L, level, msg)
				// string.format does the formatting, as in Lua.
				format := L.GetField(L.GetGlobal("string"), "format")
				if err := L.CallByParam(lua.P{Fn: format, NRet: 1, Protect: true}, argsFrom(L)...); err != nil {
					host.Raise(L, "log.%s: %v", level, err)
				}
				msg = L.Get(-1).String()
				L.Pop(1)
			}
			logMu.Lock()
			fmt.Fprintf(w, "%s %-5s %s\n", time.Now().Format("15:04:05.000"), level, msg)
			logMu.Unlock()
			return 0
		}))
	}
	return m
}

func argsFrom(L *lua.LState) []lua.LValue {
	args := make([]lua.LValue, L.GetTop())
	for i := range args {
		args[i] = L.Get(i + 1)
	}
	return args
}

// checkFormatArgs raises when a numeric verb (%d, %x, %f…) gets an
// argument that is not a number: gopher-lua's string.format would print 0.
func checkFormatArgs(L *lua.LState, level, format string) {
	arg := 2
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("-+ #0123456789.", format[i]) >= 0 {
			i++
		}
		if i >= len(format) || format[i] == '%' {
			continue
		}
		if strings.IndexByte("cdiouxXeEfgG", format[i]) >= 0 {
			v := L.Get(arg)
			if _, ok := v.(lua.LNumber); !ok {
				if s, isStr := v.(lua.LString); !isStr || lua.LVAsNumber(s) == 0 && strings.TrimSpace(string(s)) != "0" {
					host.Raise(L, "log.%s: bad argument #%d (%%%c needs a number, got %s %q)", level, arg, format[i], v.Type().String(), v.String())
				}
			}
		}
		arg++
	}
}
