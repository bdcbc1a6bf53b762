package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// newTestRuntime has a Go primitive sleep(seconds) behind the __await shim.
func newTestRuntime(t *testing.T, ctx context.Context) *Runtime {
	t.Helper()
	rt, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt.L.SetGlobal("__sleep", rt.L.NewFunction(func(L *lua.LState) int {
		d := time.Duration(float64(L.CheckNumber(1)) * float64(time.Second))
		L.Push(rt.Async(L, func(ctx context.Context) Converter {
			select {
			case <-time.After(d):
				return Values(true)
			case <-ctx.Done():
				return Fail("cancelled")
			}
		}))
		return 1
	}))
	// Named like launcher's own shims, so errors point past it at the caller.
	shim, err := rt.L.Load(strings.NewReader(`function sleep(s) return __await(__sleep(s), "sleep") end`), "[launcher test]")
	if err != nil {
		t.Fatal(err)
	}
	rt.L.Push(shim)
	if err := rt.L.PCall(0, 0, nil); err != nil {
		t.Fatal(err)
	}
	return rt
}

// run runs code as a task to completion and returns its results.
func run(t *testing.T, rt *Runtime, code string) ([]lua.LValue, error) {
	t.Helper()
	fn, err := rt.L.LoadString(code)
	if err != nil {
		t.Fatal(err)
	}
	var ret []lua.LValue
	var terr error
	finished := false
	rt.Spawn("test", fn, nil, func(r []lua.LValue, err error) { ret, terr, finished = r, err, true })
	if err := rt.Loop(func() bool { return finished }); err != nil {
		return nil, err
	}
	return ret, terr
}

func TestWaitsWorkEverywhereLuaCanPause(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mymod.lua"), []byte(`local M = {} function M.nap() sleep(0.01) return "module" end return M`), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.L.DoString(`package.path = "` + dir + `/?.lua;" .. package.path`)
	cases := map[string]string{
		"plain":            `sleep(0.01) return "plain"`,
		"pcall ok":         `local ok, v = pcall(function() sleep(0.01) return "pcall" end) assert(ok) return v`,
		"pcall error":      `local ok, e = pcall(function() sleep(0.01) error("boom") end) assert(not ok) assert(tostring(e):find("boom")) return "caught"`,
		"xpcall":           `local ok, e = xpcall(function() sleep(0.01) error("x") end, function(m) return "handled: " .. tostring(m) end) return e`,
		"nested pcall":     `return select(2, pcall(function() return select(2, pcall(function() sleep(0.01) return "deep" end)) end))`,
		"coroutine.wrap":   `local f = coroutine.wrap(function() sleep(0.01) coroutine.yield("mine") return "done" end) local a = f() local b = f() return a .. "," .. b`,
		"coroutine.resume": `local co = coroutine.create(function(x) sleep(0.01) local y = coroutine.yield(x + 1) return y * 2 end) local _, a = coroutine.resume(co, 1) local _, b = coroutine.resume(co, 10) return a .. "," .. b`,
		"require'd fn":     `return require("mymod").nap()`,
		"tail call":        `local function f() return sleep(0.01) end local r = f() return tostring(r)`,
		// Issue 13, bug 1: pcall and xpcall of a Go function returned nothing.
		"pcall go fn":  `local ok, v = pcall(string.rep, "ab", 2) assert(ok, "not ok") return v`,
		"pcall go err": `local ok, e = pcall(string.rep) assert(not ok) return "err:" .. tostring(e ~= nil)`,
		"xpcall go fn": `local ok, v = xpcall(string.rep, debug.traceback, "a", 3) assert(ok, "not ok") return v`,
	}
	want := map[string]string{"plain": "plain", "pcall ok": "pcall", "pcall error": "caught", "xpcall": "handled: ", "nested pcall": "deep",
		"coroutine.wrap": "mine,done", "coroutine.resume": "2,20", "require'd fn": "module", "tail call": "true",
		"pcall go fn": "abab", "pcall go err": "err:true", "xpcall go fn": "aaa"}
	for name, code := range cases {
		ret, err := run(t, rt, code)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := ret[0].String(); !strings.HasPrefix(got, want[name]) {
			t.Errorf("%s: got %q want %q", name, got, want[name])
		}
	}
}

func TestWaitsWhereLuaCannotPauseAreClearErrors(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "waitsonload.lua"), []byte(`sleep(0.01) return {}`), 0o644)
	rt.L.DoString(`package.path = "` + dir + `/?.lua;" .. package.path`)
	cases := map[string]string{
		"require at load": `require("waitsonload")`,
		"for-in":          `for x in function() sleep(0.01) return nil end do end`,
		"metamethod":      `local t = setmetatable({}, {__index = function() sleep(0.01) return 1 end}) return t.x`,
		"table.sort":      `local t = {3, 1, 2} table.sort(t, function(a, b) sleep(0.01) return a < b end)`,
		"bare yield":      `coroutine.yield(1)`,
	}
	for name, code := range cases {
		_, err := run(t, rt, code)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "require") && !strings.Contains(err.Error(), "cannot pause") && !strings.Contains(err.Error(), "coroutine") {
			t.Errorf("%s: unclear error: %v", name, err)
		}
	}
	// The runtime still works afterwards.
	if ret, err := run(t, rt, `sleep(0.01) return "ok"`); err != nil || ret[0].String() != "ok" {
		t.Fatalf("after errors: %v %v", ret, err)
	}
}

func TestTasksInterleaveOnOneGoroutine(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	rt.L.DoString(`order = {}`)
	done := 0
	// The first task waits (yielding) until the second has run: it can
	// only finish if the two interleave on the one goroutine. (Two sleeps
	// of different lengths raced under load: CI-like local run.)
	for _, code := range []string{`while #order == 0 do sleep(0.001) end table.insert(order, "slow")`, `sleep(0.01) table.insert(order, "fast")`} {
		fn, _ := rt.L.LoadString(code)
		rt.Spawn("t", fn, nil, func([]lua.LValue, error) { done++ })
	}
	if err := rt.Loop(func() bool { return done == 2 }); err != nil {
		t.Fatal(err)
	}
	if got := rt.L.DoString(`assert(order[1] == "fast" and order[2] == "slow")`); got != nil {
		t.Error(got)
	}
}

func TestCancellationStopsBusyLoopsAndWaits(t *testing.T) {
	// Neither ends by itself within the package's test timeout: returning
	// at all is the cancellation.
	for name, code := range map[string]string{"busy": `while true do end`, "waiting": `sleep(86400)`} {
		ctx, cancel := context.WithCancel(context.Background())
		rt := newTestRuntime(t, ctx)
		fn, _ := rt.L.LoadString(code)
		finished := false
		var terr error
		// Spawn runs the task until it waits: a busy loop never does.
		time.AfterFunc(100*time.Millisecond, cancel)
		rt.Spawn("t", fn, nil, func(r []lua.LValue, err error) { finished, terr = true, err })
		if err := rt.Loop(func() bool { return finished }); err == nil && terr == nil {
			t.Errorf("%s: ended without an error after cancellation", name)
		}
		rt.Close()
	}
}

func TestErrorsCarryTraceback(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	_, err := run(t, rt, "local function g() error('bad thing') end\nlocal function f() g() end\nf()")
	if err == nil || !strings.Contains(err.Error(), "bad thing") || !strings.Contains(err.Error(), "stack traceback") {
		t.Errorf("error: %v", err)
	}
}

func TestOptionsAreStrict(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	rt.L.SetGlobal("f", rt.L.NewFunction(func(L *lua.LState) int {
		o := CheckOptions(L, 1, "timeout", "force")
		L.Push(lua.LNumber(OptDuration(L, o, "timeout").Seconds()))
		return 1
	}))
	_, err := run(t, rt, "\n\nf({timeot = 1})")
	if err == nil || !strings.Contains(err.Error(), "unknown option timeot") || !strings.Contains(err.Error(), ":3:") {
		t.Errorf("got %v", err)
	}
	if ret, err := run(t, rt, "return f({timeout = 2.5})"); err != nil || ret[0].String() != "2.5" {
		t.Errorf("got %v %v", ret, err)
	}
}

func BenchmarkTaskWait(b *testing.B) {
	rt, _ := New(context.Background(), Options{})
	defer rt.Close()
	rt.L.SetGlobal("__nop", rt.L.NewFunction(func(L *lua.LState) int {
		L.Push(rt.Async(L, func(context.Context) Converter { return Values(true) }))
		return 1
	}))
	fn, _ := rt.L.LoadString(`local n = ... for i = 1, n do __await(__nop()) end`)
	b.ResetTimer()
	finished := false
	rt.Spawn("b", fn, []lua.LValue{lua.LNumber(b.N)}, func([]lua.LValue, error) { finished = true })
	_ = rt.Loop(func() bool { return finished })
}

// TestCannotPauseIsCaughtAtTheCallersLine: a wait where gopher-lua cannot
// pause is the documented error at the caller's file:line (it used to be a
// nil pointer dereference with no position, or a wrong message), and pcall
// catches it.
func TestCannotPauseIsCaughtAtTheCallersLine(t *testing.T) {
	rt := newTestRuntime(t, context.Background())
	defer rt.Close()
	cases := map[string]string{
		"for-in":      `for x in function() sleep(0.01) return nil end do end`,
		"metamethod":  `local t = setmetatable({}, {__index = function() sleep(0.01) return 1 end}) return t.x`,
		"table.sort":  `local t = {3, 1, 2} table.sort(t, function(a, b) sleep(0.01) return a < b end)`,
		"string.gsub": `string.gsub("abc", "%w", function(c) sleep(0.01) return c end)`,
	}
	for name, code := range cases {
		_, err := run(t, rt, "\n"+code)
		if err == nil || !strings.Contains(err.Error(), ":2: "+ErrCannotPause) {
			t.Errorf("%s: want %q at line 2, got %v", name, ErrCannotPause, err)
		}
		ret, err := run(t, rt, "local ok, msg = pcall(function()\n"+code+"\nend) return tostring(ok) .. ' ' .. tostring(msg)")
		if err != nil || !strings.HasPrefix(ret[0].String(), "false ") || !strings.Contains(ret[0].String(), ErrCannotPause) {
			t.Errorf("%s under pcall: %v %v", name, ret, err)
		}
	}
	// Waits in the user's own coroutines and in pcall still work.
	if ret, err := run(t, rt, `local ok, v = pcall(function() sleep(0.01) return 7 end)
local co = coroutine.wrap(function() sleep(0.01) coroutine.yield(5) end)
return tostring(ok) .. v .. co()`); err != nil || ret[0].String() != "true75" {
		t.Errorf("waits in pcall and coroutines: %v %v", ret, err)
	}
}

// writes records each Write separately.
type writes struct{ got []string }

func (w *writes) Write(p []byte) (int, error) { w.got = append(w.got, string(p)); return len(p), nil }

// A printed line is one Write, so it cannot interleave with the progress
// lines another goroutine writes to the same stdout (gopher-lua's own print
// writes each argument, each tab and the newline separately).
func TestPrintWritesWholeLines(t *testing.T) {
	w := &writes{}
	rt, err := New(context.Background(), Options{Stdout: w})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := run(t, rt, `print("go", 1, nil, setmetatable({}, {__tostring = function() return "meta" end}))`); err != nil {
		t.Fatal(err)
	}
	if len(w.got) != 1 || w.got[0] != "go\t1\tnil\tmeta\n" {
		t.Errorf("writes: %q", w.got)
	}
}
