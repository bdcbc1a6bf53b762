package binding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/fake"
	"github.com/robotlauncher/launcher/stdlib"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type world struct {
	h    *Host
	e    *engine.Engine
	m    *fake.Machine
	log  *syncBuf
	dir  string
	cfg  string
	conn *fake.Connector
}

// newWorld makes an engine on fake machines and a Lua host bound to it.
func newWorld(t testing.TB, yaml string) *world {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "launcher.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	conn := fake.NewConnector()
	e := engine.New(engine.Options{Config: cfg, Connector: conn})
	log := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := New(ctx, e, Options{Log: log, Builtins: []string{"run", "kill"}, MonitorEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); h.Close() })
	m, _ := conn.Get("local")
	return &world{h: h, e: e, m: m, log: log, dir: dir, cfg: path, conn: conn}
}

// script runs code as a script file and returns its error.
func (w *world) script(t testing.TB, code string, args ...string) error {
	t.Helper()
	p := filepath.Join(w.dir, fmt.Sprintf("s%d.lua", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return w.h.RunScript(p, args)
}

func (w *world) mustScript(t testing.TB, code string) {
	t.Helper()
	if err := w.script(t, code); err != nil {
		t.Fatalf("script: %v\nlog:\n%s", err, w.log)
	}
}

func (w *world) plugin(t *testing.T, code string) error {
	t.Helper()
	p := filepath.Join(w.dir, fmt.Sprintf("p%d.lua", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return w.h.LoadPlugins([]string{p})
}

const robotYAML = `
context: {session: s, params: {robot: kyon}}
core: {cmd: core}
ctrl: {cmd: "ctrl {robot}", depends: [core]}
home: {cmd: home, persistent: false, depends: [ctrl]}
`

func TestScriptDrivesTheEngine(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.mustScript(t, `
local launcher = require("launcher")
assert(launcher.start("ctrl", {params = {robot = "x"}}))
local st = launcher.status("ctrl")
assert(st.state == "READY", st.state)
assert(st.machine == "local" and st.session == "s" and st.pid > 0)
assert(st.run_params.robot == "x" and st.run_variants == nil and st.config_changed == nil, "the run's request")
assert(type(st.age) == "number" and st.age >= 0 and st.age < 5, "age " .. tostring(st.age))
local all = launcher.status()
assert(#all == 3 and all[1].process == "core")
assert(launcher.wait_ready("core", {timeout = 1}))
assert(launcher.kill("core"))
assert(launcher.status("ctrl").state == "STOPPED", "dependant stopped first")
local ok, err = launcher.wait_ready("core", {timeout = 1})
assert(ok == nil and err == "exited", tostring(err))
assert(launcher.kill_all())
assert(launcher.config.session == "s" and launcher.config.params.robot == "kyon")
assert(launcher.config.processes.ctrl.depends[1] == "core")
assert(not pcall(function() launcher.config.session = "x" end), "config is read-only")
`)
	if w.m.Spawned("ctrl") != 1 || w.m.Spawned("core") != 1 {
		t.Errorf("spawns: ctrl %d core %d", w.m.Spawned("ctrl"), w.m.Spawned("core"))
	}
}

func TestOperationalFailuresReturnNilErr(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		if spec.Name == "home" {
			return fake.Behaviour{ExitAfter: 5 * time.Millisecond, ExitCode: 3}
		}
		return fake.Behaviour{}
	}
	w.mustScript(t, `
local launcher = require("launcher")
local ok, err = launcher.start("home")
assert(ok == nil and err:find("failed with exit code 3"), tostring(err))
local ok2, err2 = launcher.start("core", {variants = {"nope"}})
assert(ok2 == nil and err2:find("unknown variant"), tostring(err2))
`)
}

func TestProgrammerErrorsNameTheCallersLine(t *testing.T) {
	w := newWorld(t, robotYAML)
	for code, want := range map[string]string{
		"local l = require('launcher')\n\nl.start('core', {timout = 1})": `:3: unknown option timout`,
		"require('launcher').start('nope')":                              `:1: bad argument #1: unknown process "nope"`,
		"require('launcher').on('bogus', function() end)":                `:1: bad argument #1: unknown event bogus`,
		"require('launcher').sleep('x')":                                 `:1: bad argument #1: number expected`,
	} {
		err := w.script(t, code)
		if err == nil || !regexp.MustCompile(`s\d+\.lua`+regexp.QuoteMeta(want)).MatchString(err.Error()) {
			t.Errorf("%q: %v", code, err)
		}
	}
}

func TestWaitsInPcallHandlersAndModules(t *testing.T) {
	w := newWorld(t, robotYAML)
	mod := filepath.Join(w.dir, "helpers.lua")
	os.WriteFile(mod, []byte(`local launcher = require("launcher")
local M = {}
function M.bring(name) local ok, err = launcher.start(name) return ok end
return M`), 0o644)
	w.mustScript(t, `
package.path = "`+w.dir+`/?.lua;" .. package.path
local launcher = require("launcher")
local helpers = require("helpers")
assert(helpers.bring("core"))
local ok, v = pcall(function() launcher.sleep(0.01) return launcher.status("core").state end)
assert(ok and v == "READY", tostring(v))
local seen = {}
launcher.on("ready", "ctrl", function(ev)
  -- a handler may wait, inside pcall too
  local ok2 = pcall(launcher.sleep, 0.01)
  seen[#seen + 1] = ev.process .. ":" .. tostring(ok2)
end)
assert(launcher.start("ctrl"))
launcher.supervise({timeout = 0.3})
assert(seen[1] == "ctrl:true", tostring(seen[1]))
`)
}

func TestHandlersRunOneAtATimeAndErrorsDoNotStop(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
a: {cmd: a}
b: {cmd: b}
c: {cmd: c}
`)
	w.mustScript(t, `
local launcher = require("launcher")
local active, maxActive, calls = 0, 0, 0
launcher.on("ready", function(ev)
  active = active + 1
  if active > maxActive then maxActive = active end
  launcher.sleep(0.02)
  calls = calls + 1
  active = active - 1
  if ev.process == "b" then error("handler failure for b") end
end)
for _, n in ipairs({"a", "b", "c"}) do assert(launcher.start(n)) end
launcher.supervise({timeout = 0.5})
assert(calls == 3, "calls " .. calls)
assert(maxActive == 1, "handlers overlapped: " .. maxActive)
`)
	if !strings.Contains(w.log.String(), "handler failure for b") || !strings.Contains(w.log.String(), "stack traceback") {
		t.Errorf("handler error not reported with a traceback:\n%s", w.log)
	}
}

func TestExitedEventsReachHandlers(t *testing.T) {
	w := newWorld(t, robotYAML)
	subscribed := make(chan struct{})
	w.h.Do(func() {
		w.h.rt.L.SetGlobal("__subscribed", w.h.rt.L.NewFunction(func(*luaState) int { close(subscribed); return 0 }))
	})
	go func() {
		// The process dies on its own once the script listens.
		<-subscribed
		w.m.Exit("core", 2)
	}()
	w.mustScript(t, `
local launcher = require("launcher")
assert(launcher.start("core"))
local got
launcher.on("exited", "co*", function(ev) got = ev end)
__subscribed()
while not got do launcher.sleep(0.01) end
assert(got.process == "core" and got.exit_code == 2 and got.expected == false, got.message)
`)
	// How soon it arrives is measured by BenchmarkExitToHandler.
}

func TestLuaReadyCheckAndCheckKinds(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
srv: {cmd: srv}
cam: {cmd: cam, ready_check: {check: counting, after: 3}}
`)
	if err := w.plugin(t, `
local launcher = require("launcher")
polls = 0
launcher.ready_check("srv", function(proc)
  polls = polls + 1
  if polls < 3 then return false, "warming up " .. polls end
  return true
end)
kind_calls = 0
launcher.check("counting", function(proc, o)
  kind_calls = kind_calls + 1
  return kind_calls >= tonumber(o.after), "count " .. kind_calls
end, {options = {"after"}})
`); err != nil {
		t.Fatal(err)
	}
	w.mustScript(t, `
local launcher = require("launcher")
assert(launcher.start("srv"))
assert(polls == 3, "polls " .. polls)
assert(launcher.start("cam"))
assert(kind_calls == 3, "kind calls " .. kind_calls)
`)
	// An unknown kind and an unknown option are config errors with line.
	w2 := newWorld(t, "context: {session: s}\na: {cmd: a, ready_check: {check: nosuch}}\nb: {cmd: b, ready_check: {check: tcp, prot: 1}}\n")
	err := w2.h.LoadPlugins(nil)
	var ce config.Errors
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `launcher.yaml:2:`) || !strings.Contains(err.Error(), `unknown check kind "nosuch"`) ||
		!strings.Contains(err.Error(), `launcher.yaml:3:`) || !strings.Contains(err.Error(), `has no option "prot"`) {
		t.Errorf("check kind validation: %v", err)
	}
}

func TestWatchAndExec(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.m.Behave = func(executor.SpawnSpec) fake.Behaviour {
		return fake.Behaviour{Output: []string{"boot", "listening on 11311", "noise", "listening on 11312"}}
	}
	w.m.Check = func(spec executor.ExecSpec) executor.Result {
		return executor.Result{ExitCode: 4, Stdout: []byte("out:" + spec.Script), Stderr: []byte("err")}
	}
	w.conn.Down["robot@10.0.0.9"] = true
	w.mustScript(t, `
local launcher = require("launcher")
assert(launcher.start("core"))
local wt = launcher.watch("core", {lines = 10, match = "listening"})
local a = wt:next({timeout = 2})
local b = wt:next({timeout = 2})
assert(a == "listening on 11311" and b == "listening on 11312", tostring(a) .. "|" .. tostring(b))
local none, err = wt:next({timeout = 0.1})
assert(none == nil and err == "timeout", tostring(err))
wt:close()
local _, err2 = wt:next()
assert(err2 == "closed", tostring(err2))
local code, out, serr = launcher.exec("core", "echo hi", {timeout = 2})
assert(code == 4 and out == "out:echo hi" and serr == "err")
local nc, nerr = launcher.exec("robot@10.0.0.9", "true")
assert(nc == nil and nerr ~= nil)
`)
}

func TestCommandsAndTheirRules(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		if spec.Name == "home" {
			return fake.Behaviour{ExitAfter: 5 * time.Millisecond}
		}
		return fake.Behaviour{}
	}
	if err := w.plugin(t, `require("launcher").command("homing", {help = "home the robot", usage = "[AXIS]"}, function(args)
  assert(require("launcher").start("home"))
  homed_axis = args[1]
end)`); err != nil {
		t.Fatal(err)
	}
	cmds := w.h.Commands()
	if len(cmds) != 1 || cmds[0].Name != "homing" || cmds[0].Help != "home the robot" {
		t.Fatalf("commands: %+v", cmds)
	}
	if err := w.h.RunCommand(cmds[0], []string{"z"}); err != nil {
		t.Fatal(err)
	}
	if w.m.Spawned("home") != 1 {
		t.Error("command did not run")
	}
	err := w.plugin(t, `require("launcher").command("run", {}, function() end)`)
	var le *LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), `"run" is a built-in command`) {
		t.Errorf("clash: %v", err)
	}
	err = w.plugin(t, "local x = \n")
	if !errors.As(err, &le) || !regexp.MustCompile(`p\d+\.lua:1: `).MatchString(err.Error()) {
		t.Errorf("syntax error: %v", err)
	}
	err = w.plugin(t, `require("launcher").sleep(1)`)
	if err == nil || !strings.Contains(err.Error(), "not while plugins load") {
		t.Errorf("wait at load: %v", err)
	}
}

func TestScriptErrorsAndCancellation(t *testing.T) {
	w := newWorld(t, robotYAML)
	err := w.script(t, "local function f() error('boom') end\nf()\n")
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "stack traceback") {
		t.Errorf("runtime error: %v", err)
	}
	err = w.script(t, "x = = 1")
	var le *LoadError
	if !errors.As(err, &le) {
		t.Errorf("syntax error: %v", err)
	}
	// Ctrl-C cancels a busy loop and a wait promptly.
	// Neither ends by itself: returning at all is the cancellation (the
	// package's test timeout bounds a hang).
	for _, code := range []string{"while true do end", "require('launcher').supervise()"} {
		ctx, cancel := context.WithCancel(context.Background())
		cfg, _ := config.Load(w.cfg)
		e := engine.New(engine.Options{Config: cfg, Connector: fake.NewConnector()})
		h, err := New(ctx, e, Options{Log: &syncBuf{}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(w.dir, "busy.lua")
		os.WriteFile(p, []byte(code), 0o644)
		time.AfterFunc(150*time.Millisecond, cancel)
		if err := h.RunScript(p, nil); err == nil {
			t.Errorf("%q: ended without an error after Ctrl-C", code)
		}
		h.Close()
	}
}

// TestStubsMatchTheRegistration fails when a function of the launcher
// module has no LuaLS stub, or a stub documents a function that does not
// exist.
func TestStubsMatchTheRegistration(t *testing.T) {
	data, err := stdlib.Lua.ReadFile("types/launcher.lua")
	if err != nil {
		t.Fatal(err)
	}
	stubbed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^function launcher\.(\w+)\(`).FindAllStringSubmatch(string(data), -1) {
		stubbed[m[1]] = true
	}
	w := newWorld(t, robotYAML)
	var registered []string
	err = w.h.Do(func() {
		w.h.rt.L.DoString(`__names = {} for k, v in pairs(require("launcher")) do if type(v) == "function" then table.insert(__names, k) end end`)
		t := w.h.rt.L.GetGlobal("__names")
		for i := 1; i <= w.h.rt.L.ObjLen(t); i++ {
			registered = append(registered, w.h.rt.L.GetTable(t, lnum(i)).String())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := map[string]bool{}
	for _, n := range registered {
		reg[n] = true
		if !stubbed[n] {
			t.Errorf("launcher.%s has no stub in stdlib/types/launcher.lua", n)
		}
	}
	for n := range stubbed {
		if !reg[n] {
			t.Errorf("the stub documents launcher.%s, which is not registered", n)
		}
	}
	for _, n := range Functions {
		if !reg[n] {
			t.Errorf("Functions lists %s, which is not registered", n)
		}
	}
}

// BenchmarkEventDispatch: events from the engine's bus to a Lua handler.
func BenchmarkEventDispatch(b *testing.B) {
	cfg, _ := config.Parse("b.yaml", []byte("context: {session: s}\na: {cmd: a}\n"))
	e := engine.New(engine.Options{Config: cfg, Connector: fake.NewConnector()})
	h, err := New(context.Background(), e, Options{Log: &syncBuf{}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	done := make(chan struct{})
	n := b.N
	h.Do(func() {
		h.rt.L.DoString(`count = 0`)
		h.rt.L.SetGlobal("__done", h.rt.L.NewFunction(func(L *luaState) int { close(done); return 0 }))
		h.rt.L.DoString(fmt.Sprintf(`require("launcher").on("ready", function(ev) count = count + 1 if count == %d then __done() end end)`, n))
	})
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		e.Bus().Publish(engine.Event{Kind: engine.Ready, Process: "a"})
	}
	<-done
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkExitToHandler: from a process's exit to its `exited` handler
// while a script supervises (the monitor polls every 20 ms here).
func BenchmarkExitToHandler(b *testing.B) {
	w := newWorld(b, robotYAML)
	var total time.Duration
	var at time.Time
	w.h.Do(func() {
		L := w.h.rt.L
		L.SetGlobal("__exit", L.NewFunction(func(*luaState) int { at = time.Now(); go w.m.Exit("core", 2); return 0 }))
		L.SetGlobal("__got", L.NewFunction(func(*luaState) int { total += time.Since(at); return 0 }))
	})
	b.ResetTimer()
	w.mustScript(b, fmt.Sprintf(`
local launcher = require("launcher")
local got = 0
for i = 1, %d do
  assert(launcher.start("core"))
  if i == 1 then launcher.on("exited", "core", function() got = got + 1; __got() end) end
  __exit()
  while got < i do launcher.sleep(0.002) end
end`, b.N))
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/exit")
}

// BenchmarkLuaReadyCheckPoll: one poll of a Lua ready check, as the engine
// runs it (the target is < 1 ms per poll).
func BenchmarkLuaReadyCheckPoll(b *testing.B) {
	cfg, _ := config.Parse("b.yaml", []byte("context: {session: s}\na: {cmd: a}\n"))
	e := engine.New(engine.Options{Config: cfg, Connector: fake.NewConnector()})
	h, err := New(context.Background(), e, Options{Log: &syncBuf{}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	h.Do(func() {
		h.rt.L.DoString(`local n = 0 require("launcher").ready_check("a", function(proc) n = n + 1 return proc.name == "a" end)`)
	})
	r, _ := cfg.Resolve([]string{"a"}, config.Request{})
	probe := engine.Probe{Process: r.Get("a")}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ok, _, err := h.Check(context.Background(), probe); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/poll")
}

// Issue 13, bug 3: a start that runs out of its timeout says which process
// and why, and reaches alerts as a failed event.
func TestStartTimeoutIsAFailureAlertsSee(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
core: {cmd: core}
slow: {cmd: slow, ready_check: "never", depends: [core]}
`)
	w.m.Check = func(spec executor.ExecSpec) executor.Result {
		if spec.Script == "never" {
			return executor.Result{ExitCode: 1}
		}
		return executor.Result{}
	}
	w.mustScript(t, `
local launcher = require("launcher")
local failed = {}
launcher.on("failed", function(ev) failed[#failed + 1] = ev.process .. ": " .. ev.message end)
local ok, err = launcher.start("slow", {timeout = 0.3})
assert(ok == nil, "a start that timed out succeeded")
assert(tostring(err):find("slow") and tostring(err):find("timeout"), tostring(err))
for _ = 1, 600 do -- the handler runs once the script waits: poll
  if #failed > 0 then break end
  launcher.sleep(0.05)
end
assert(#failed == 1 and failed[1]:find("^slow: not ready within"), table.concat(failed, "; "))
assert(launcher.status("core").state == "READY", "core keeps running")
`)
}

// Issue 13, bug 5: a looping handler starved every other handler (an
// exited alert was never delivered while a watchdog handler looped).
// Handlers now wait only for their own previous call.
func TestALoopingHandlerHoldsUpOnlyItself(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
a: {cmd: a}
b: {cmd: b}
`)
	w.mustScript(t, `
local launcher = require("launcher")
local watchdog, seen = 0, {}
launcher.on("ready", "a", function()
  while true do watchdog = watchdog + 1; launcher.sleep(0.01) end
end)
launcher.on("ready", "b", function(ev) seen[#seen + 1] = ev.process end)
assert(launcher.start("a"))
assert(launcher.start("b"))
local t0 = require("time").now()
while #seen == 0 and require("time").since(t0) < 10 do launcher.sleep(0.01) end
assert(#seen == 1 and seen[1] == "b", "the b handler never ran while the watchdog looped")
assert(watchdog > 0, "the watchdog did not run")
`)
}

// Issue 13, bug 4: events left at exit were dropped with one line and no
// count. The drain says which handler was busy and how many events of
// which kind were not delivered, and a plugin can wait longer.
func TestDrainSaysWhatWasNotDelivered(t *testing.T) {
	yaml := "context: {session: s}\n"
	var names []string
	for i := 0; i < 6; i++ {
		yaml += fmt.Sprintf("p%d: {cmd: p%d}\n", i, i)
		names = append(names, fmt.Sprintf("%q", fmt.Sprintf("p%d", i)))
	}
	slow := `
local launcher = require("launcher")
launcher.on("ready", function(ev) launcher.sleep(%s) end)
`
	w := newWorld(t, yaml)
	if err := w.plugin(t, fmt.Sprintf(slow, "30")); err != nil {
		t.Fatal(err)
	}
	w.mustScript(t, `assert(require("launcher").start({`+strings.Join(names, ", ")+`}))`)
	rep := w.h.Drain(50 * time.Millisecond)
	if rep.Idle || rep.Undelivered["ready"] != 5 || len(rep.Running) != 1 || !strings.Contains(rep.Running[0], "ready handler at ") {
		t.Fatalf("drain of a slow handler: %+v", rep)
	}
	if s := rep.String(); !strings.Contains(s, "events not delivered: 5 ready") || !strings.Contains(s, ".lua:3") {
		t.Errorf("the report does not say where and how many: %s", s)
	}

	// A plugin that needs longer says so; the longest wish applies.
	w = newWorld(t, yaml)
	if err := w.plugin(t, fmt.Sprintf(slow, "0.05")+"launcher.set_drain_timeout(30)\nlauncher.set_drain_timeout(1)\n"); err != nil {
		t.Fatal(err)
	}
	w.mustScript(t, `assert(require("launcher").start({`+strings.Join(names, ", ")+`}))`)
	if rep := w.h.Drain(time.Millisecond); !rep.Idle || rep.Waited != 30*time.Second {
		t.Errorf("a drain time set by a plugin: %+v", rep)
	}
	if err := w.plugin(t, `require("launcher").set_drain_timeout(0)`); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("set_drain_timeout(0): %v", err)
	}
}

// Issue 13, bug 6: config lists were read-only proxies that table.concat,
// unpack, next and json.encode saw as empty. They read as tables now, and
// an empty list is [] in JSON; writes still raise.
func TestConfigListsAreTablesToEveryFunction(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
core: {cmd: core, env: {ROS_MASTER_URI: "http://localhost:11311"}}
ctrl: {cmd: ctrl, depends: [core]}
home: {cmd: home, depends: [core, ctrl]}
`)
	w.mustScript(t, `
local launcher = require("launcher")
local json = require("json")
local home = launcher.config.processes.home
assert(table.concat(home.depends, ",") == "core,ctrl", table.concat(home.depends, ","))
local a, b = unpack(home.depends)
assert(a == "core" and b == "ctrl", tostring(a) .. " " .. tostring(b))
assert(#home.depends == 2, #home.depends)
assert(next(home.depends) == 1, "next sees nothing")
assert(next(launcher.config.processes) ~= nil, "next sees no process")
assert(select("#", unpack(launcher.config.processes.core.depends)) == 0)
local enc = json.encode({depends = home.depends, none = launcher.config.processes.core.depends, env = launcher.config.processes.core.env})
local back = json.decode(enc)
assert(back.depends[1] == "core" and back.depends[2] == "ctrl", enc)
assert(enc:find('"none":%[%]'), "an empty list is not []: " .. enc)
assert(back.env.ROS_MASTER_URI == "http://localhost:11311", enc)
local whole = json.decode(json.encode(launcher.config))
assert(whole.processes.home.depends[2] == "ctrl", "json.encode(launcher.config) lost the lists")
assert(not pcall(table.insert, home.depends, "x"), "table.insert changed a config list")
assert(not pcall(table.sort, home.depends), "table.sort changed a config list")
assert(not pcall(function() home.depends[3] = "x" end), "a config list took a write")
assert(#home.depends == 2)
`)
}

// Issue 13, bug 7: a failing require was reported at "[launcher]:85" and an
// error inside a coroutine.wrap function got a "[launcher]:53:" prefix.
// Both are at the script's own file:line now.
func TestRequireAndWrapErrorsAreAtTheScriptsLine(t *testing.T) {
	w := newWorld(t, robotYAML)
	err := w.script(t, "local x = 1\nlocal m = require(\"no_such_module\")\n")
	if err == nil || !regexp.MustCompile(`s\d+\.lua:2: module no_such_module not found`).MatchString(err.Error()) || strings.Contains(err.Error(), "[launcher]") {
		t.Errorf("require of a missing module: %v", err)
	}
	err = w.script(t, "local ok, e = pcall(require, \"no_such_module\")\nassert(not ok)\nerror(e, 0)\n")
	if err == nil || !regexp.MustCompile(`s\d+\.lua:1: module no_such_module not found`).MatchString(err.Error()) {
		t.Errorf("pcall(require) of a missing module: %v", err)
	}
	err = w.script(t, "local f = coroutine.wrap(function()\n  error(\"boom\")\nend)\nf()\n")
	if err == nil || !regexp.MustCompile(`^s\d+\.lua:2: boom`).MatchString(lastPathPart(err.Error())) || strings.Contains(err.Error(), "[launcher]") {
		t.Errorf("an error in coroutine.wrap: %v", err)
	}
}

// lastPathPart drops the directory of a message that starts with a path.
func lastPathPart(s string) string {
	if i := strings.LastIndex(strings.SplitN(s, ":", 2)[0], "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Issue 13, bug 7: a custom check that loops without waiting held the
// start for the whole ready_timeout (2 minutes by default) and said only
// "context deadline exceeded". Each try is bounded like a shell check's,
// and the reason names the check, its file:line and the likely cause.
func TestABusyCheckSaysWhatAndWhere(t *testing.T) {
	w := newWorld(t, `
context: {session: s}
a: {cmd: a, ready_check: {check: spin}, ready_timeout: 1s}
`)
	if err := w.plugin(t, `
local launcher = require("launcher")
launcher.check("spin", function(proc, opts)
  while true do end
end)
`); err != nil {
		t.Fatal(err)
	}
	err := w.script(t, `local launcher = require("launcher")
local ok, err = launcher.start("a")
assert(not ok)
error(err, 0)
`)
	if err == nil || !regexp.MustCompile(`the spin check \(\S+\.lua:3\) did not return within \S+ \(a loop that never waits\?`).MatchString(err.Error()) {
		t.Errorf("a check that never returns: %v", err)
	}
}

// Issue 13, what Lua authors expect: timers (after, every, :stop()), a
// task beside the script (spawn, :cancel(), :running()) and handlers
// that fire once.
func TestTimersSpawnAndOnce(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.mustScript(t, `
local launcher = require("launcher")
local time = require("time")
local function waitfor(cond, what)
  local t0 = time.now()
  while not cond() do
    assert(time.since(t0) < 10, "timed out waiting for " .. what)
    launcher.sleep(0.01)
  end
end

-- after: once; a stopped one never runs.
local fired, never = 0, 0
launcher.after(0.02, function() launcher.sleep(0.01); fired = fired + 1 end)
local stopped = launcher.after(0.02, function() never = never + 1 end)
stopped:stop()
waitfor(function() return fired == 1 end, "after")

-- every: again and again, never overlapping, until stopped.
local ticks, active, overlap = 0, 0, false
local tick
tick = launcher.every(0.01, function()
  active = active + 1
  overlap = overlap or active > 1
  launcher.sleep(0.02)
  ticks = ticks + 1
  active = active - 1
  if ticks == 3 then tick:stop() end
end)
waitfor(function() return ticks >= 3 end, "every")
launcher.sleep(0.1)
assert(ticks == 3, "every ran after :stop(): " .. ticks)
assert(not overlap, "every's runs overlapped")
assert(never == 0 and fired == 1, "a stopped after ran, or after ran twice")

-- spawn: beside the caller, which goes on at once; cancel ends it.
local order = {}
local task = launcher.spawn(function(a, b)
  order[#order + 1] = "task " .. a .. b
  launcher.sleep(0.02)
  order[#order + 1] = "task done"
end, "x", "y")
order[#order + 1] = "caller"
waitfor(function() return not task:running() end, "the spawned task")
assert(table.concat(order, ",") == "caller,task xy,task done", table.concat(order, ","))
local forever = launcher.spawn(function() while true do launcher.sleep(0.01) end end)
launcher.sleep(0.03)
assert(forever:running())
forever:cancel()
waitfor(function() return not forever:running() end, "cancel")
local spin = launcher.spawn(function() while true do end end)
spin:cancel()
waitfor(function() return not spin:running() end, "cancel of a loop that never waits")

-- once: the first matching event only.
local readies = {}
launcher.on("ready", {once = true}, function(ev) readies[#readies + 1] = ev.process end)
assert(launcher.start("ctrl"))
waitfor(function() return #readies >= 1 end, "once")
launcher.sleep(0.05)
assert(#readies == 1 and readies[1] == "core", table.concat(readies, ","))
`)
}

// Issue 13: user events. launcher.emit(name, data) reaches "user"
// handlers (filtered by name) and every bus subscriber (serve's stream).
func TestEmitUserEvents(t *testing.T) {
	w := newWorld(t, robotYAML)
	var seen []engine.Event
	var mu sync.Mutex
	unsub := w.e.Bus().Subscribe(nil, func(ev engine.Event) {
		if ev.Kind == engine.User {
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
		}
	})
	defer unsub()
	w.mustScript(t, `
local launcher = require("launcher")
local got, all = {}, 0
launcher.on("user", {name = "battery_*"}, function(ev) got[#got + 1] = ev.name .. "=" .. ev.data.level end)
launcher.on("user", function(ev) all = all + 1 end)
launcher.emit("battery_low", {level = 12})
launcher.emit("arm_homed")
launcher.emit("battery_ok", {level = 80})
local t0 = require("time").now()
while (#got < 2 or all < 3) and require("time").since(t0) < 10 do launcher.sleep(0.01) end
assert(table.concat(got, ",") == "battery_low=12,battery_ok=80", table.concat(got, ","))
assert(all == 3, all)
assert(not pcall(launcher.emit, "bad name"), "a bad name was taken")
assert(not pcall(launcher.emit, "a" .. string.rep("b", 64)), "a name of 65 characters was taken")
assert(pcall(launcher.emit, "a" .. string.rep("b", 63)), "a name of 64 characters was refused")
assert(not pcall(launcher.emit, "x", {f = print}), "a function was taken as data")
`)
	w.e.Bus().Flush()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 || seen[0].Name != "battery_low" || seen[0].Data.(map[string]any)["level"] != int64(12) || seen[1].Data != nil {
		t.Errorf("bus subscribers got: %+v", seen)
	}
}

// Issue 13: option types for check kinds. A YAML value of the wrong type
// is a file:line config error (a {param} is checked once rendered).
func TestCheckOptionTypes(t *testing.T) {
	w := newWorld(t, `context: {session: s, params: {p: "9"}}
a: {cmd: a, ready_check: {check: beat, count: "three", host: x}}
b: {cmd: b, ready_check: {check: beat, count: 3, host: 7}}
c: {cmd: c, ready_check: {check: beat, count: "{p}", strict: true, ratio: 0.5}}
d: {cmd: d, ready_check: {check: beat, count: 2.5}}
`)
	p := filepath.Join(w.dir, "beat.lua")
	if err := os.WriteFile(p, []byte(`local launcher = require("launcher")
launcher.check("beat", function(proc, opts) return true end,
  {options = {count = "integer", host = "string", strict = "boolean", ratio = "number"}})
`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := w.h.LoadPlugins([]string{p})
	msg := fmt.Sprint(err)
	for _, want := range []string{
		`launcher.yaml:2:`, `option "count" must be an integer, not three`,
		`launcher.yaml:3:`, `option "host" must be a string, not 7`,
		`launcher.yaml:5:`, `option "count" must be an integer, not 2.5`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("option types: %q missing in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "launcher.yaml:4:") {
		t.Errorf("well-typed options refused:\n%s", msg)
	}
	bad := filepath.Join(w.dir, "bad.lua")
	os.WriteFile(bad, []byte(`require("launcher").check("x", function() return true end, {options = {n = "num"}})`), 0o644)
	if err := newWorld(t, "context: {session: s}\na: {cmd: a}\n").h.LoadPlugins([]string{bad}); err == nil || !strings.Contains(err.Error(), "bad.lua:1:") {
		t.Errorf("an unknown option type: %v", err)
	}
}

// Issue 13: handler groups are removed together.
func TestHandlerGroups(t *testing.T) {
	w := newWorld(t, robotYAML)
	w.mustScript(t, `
local launcher = require("launcher")
local g = launcher.group()
local inGroup, outside = 0, 0
g:on("user", function() inGroup = inGroup + 1 end)
g:on("user", {name = "x"}, function() inGroup = inGroup + 1 end)
launcher.on("user", function() outside = outside + 1 end)
launcher.emit("x")
local t0 = require("time").now()
while (inGroup < 2 or outside < 1) and require("time").since(t0) < 10 do launcher.sleep(0.01) end
assert(inGroup == 2 and outside == 1, inGroup .. " " .. outside)
g:off()
launcher.emit("x")
while outside < 2 and require("time").since(t0) < 10 do launcher.sleep(0.01) end
launcher.sleep(0.05)
assert(inGroup == 2 and outside == 2, "after g:off(): " .. inGroup .. " " .. outside)
assert(not pcall(g.on, "user", function() end), "g.on without self was taken")
`)
}
