package stdlib

import (
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// time: now() -> seconds since the epoch (with fractions); format(t [,
// layout]) -> string (a Go layout; default RFC 3339 with milliseconds);
// since(t) -> seconds elapsed since t; monotonic() -> seconds on a clock
// that only moves forward, for durations: a robot's wall clock steps when
// NTP or GPS sets it (a watchdog measuring silence with now() would read
// a step forward after a boot without a real-time clock as that much
// silence).
func timeLoader(L *lua.LState) int {
	m := L.NewTable()
	toTime := func(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }
	L.SetFuncs(m, map[string]lua.LGFunction{
		"now": func(L *lua.LState) int {
			L.Push(lua.LNumber(float64(time.Now().UnixNano()) / 1e9))
			return 1
		},
		"format": func(L *lua.LState) int {
			t := toTime(host.Num(L, 1))
			layout := L.OptString(2, "2006-01-02T15:04:05.000Z07:00")
			L.Push(lua.LString(t.Format(layout)))
			return 1
		},
		"monotonic": func(L *lua.LState) int {
			L.Push(lua.LNumber(time.Since(monotonicZero).Seconds()))
			return 1
		},
		"since": func(L *lua.LState) int {
			L.Push(lua.LNumber(time.Since(toTime(host.Num(L, 1))).Seconds()))
			return 1
		},
	})
	L.Push(m)
	return 1
}

// monotonicZero is time.monotonic's zero: time.Since reads Go's monotonic
// clock, which no setting of the wall clock moves.
var monotonicZero = time.Now()
