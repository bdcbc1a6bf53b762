package binding

import (
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// timer is a launcher.after / launcher.every: fn runs as a task of its own
// (it may wait) on the owner goroutine; an every timer's next run is due one
// interval after the previous run ended, so runs never overlap.
type timer struct {
	h       *Host
	name    string
	fn      *lua.LFunction
	every   time.Duration
	stopped bool // owner
	t       *time.Timer
}

// after(seconds, fn) runs fn once, seconds from now; every(seconds, fn)
// runs it again and again. Both return a handle with :stop().
func (h *Host) after(L *lua.LState) int   { return h.newTimer(L, false) }
func (h *Host) everyFn(L *lua.LState) int { return h.newTimer(L, true) }

func (h *Host) newTimer(L *lua.LState, repeat bool) int {
	secs := float64(L.CheckNumber(1))
	fn := host.Func(L, 2)
	d := time.Duration(secs * float64(time.Second))
	if secs < 0 || repeat && d < 10*time.Millisecond {
		host.ArgError(L, 1, "seconds: at least 0 (every: at least 0.01)")
	}
	name := "launcher.after"
	if repeat {
		name = "launcher.every"
	}
	tm := &timer{h: h, name: fmt.Sprintf("%s (%s)", name, host.UserWhere(L)), fn: fn}
	if repeat {
		tm.every = d
	}
	tm.schedule(d)
	L.Push(newHandle(L, tm, name, map[string]lua.LValue{
		"stop": L.NewFunction(func(L *lua.LState) int {
			tm.stopped = true
			tm.t.Stop()
			return 0
		}),
	}))
	return 1
}

// schedule arms the timer (owner); when it fires, the run is posted to the
// owner goroutine.
func (tm *timer) schedule(d time.Duration) {
	tm.t = time.AfterFunc(d, func() {
		tm.h.rt.Post(tm.fire)
	})
}

func (tm *timer) fire() {
	if tm.stopped || tm.h.ctx.Err() != nil {
		return
	}
	tm.h.rt.Spawn(tm.name, tm.fn, nil, func(_ []lua.LValue, err error) {
		if err != nil && !host.Cancelled(err) {
			tm.h.rt.OnError(err)
		}
		if tm.every > 0 && !tm.stopped {
			tm.schedule(tm.every)
		}
	})
}

// spawn(fn, ...) runs fn(...) as a task beside the caller: it may wait, and
// the caller goes on at once. The handle's :cancel() ends it at its next
// wait (or at once, if it loops without waiting); :running() tells whether
// it still runs. An error in it is reported with its traceback.
func (h *Host) spawn(L *lua.LState) int {
	fn := host.Func(L, 1)
	var args []lua.LValue
	for i := 2; i <= L.GetTop(); i++ {
		args = append(args, L.Get(i))
	}
	running := true
	t := h.rt.NewTask("launcher.spawn ("+host.UserWhere(L)+")", fn, args, func(_ []lua.LValue, err error) {
		running = false
		if err != nil && !host.Cancelled(err) {
			h.rt.OnError(err)
		}
	})
	ud := newHandle(L, t, "launcher.Task", map[string]lua.LValue{
		"cancel": L.NewFunction(func(L *lua.LState) int {
			t.Cancel()
			return 0
		}),
		"running": L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LBool(running))
			return 1
		}),
	})
	// It starts once the caller yields or returns: the caller's own
	// thread is the one running now.
	h.rt.Post(func() { h.rt.Start(t) })
	L.Push(ud)
	return 1
}
