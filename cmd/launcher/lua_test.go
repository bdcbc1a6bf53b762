package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// copyDir copies an example into the test's directory.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// alertServer records the JSON alerts posted to it (on loopback).
type alertServer struct {
	mu     sync.Mutex
	alerts []map[string]any
	url    string
}

func newAlertServer(t *testing.T) *alertServer {
	a := &alertServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &v) == nil {
			a.mu.Lock()
			a.alerts = append(a.alerts, v)
			a.mu.Unlock()
		}
		w.WriteHeader(204)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a.url = "http://" + ln.Addr().String() + "/alert"
	return a
}

func (a *alertServer) find(process string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.alerts {
		if al["process"] == process {
			return al
		}
	}
	return nil
}

func TestRobotExample(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: x}\nx: {cmd: 'true'}\n")
	robot := filepath.Join(e.dir, "robot")
	copyDir(t, "../../examples/robot", robot)
	port := executortest.FreePort(t, "127.0.0.1")
	cfgPath := filepath.Join(robot, "launcher.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "port: 11411", fmt.Sprintf("port: %d", port), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg = cfgPath
	alerts := newAlertServer(t)
	e.extra = append(e.extra, "ROBOT_ALERT_URL="+alerts.url)

	// The plugin command is listed and the check kind works for plain run.
	if r := e.mustRun("--help"); !strings.Contains(r.stdout, "calibrate") || !strings.Contains(r.stdout, "plugin commands") {
		t.Errorf("help lacks the plugin command:\n%s", r.stdout)
	}
	b := e.start("script", filepath.Join(robot, "bringup.lua"))
	e.waitState("planner", "READY")
	out := b.stderr()
	for _, want := range []string{"stage core done", "stage control done", "stage homing done", "stage planning done", "supervising"} {
		if !executortest.Poll(func() bool { return strings.Contains(b.stderr(), want) }) {
			t.Errorf("script output lacks %q:\n%s", want, out)
		}
	}
	// roscore's readiness really depended on the Lua checks: its log line
	// and the port came before "ready".
	log := e.logOf("robot", "roscore")
	if !strings.Contains(log, "started core service on port") {
		t.Errorf("roscore log:\n%s", log)
	}
	// A process that dies unexpectedly: an alert with the right fields.
	pid := e.pid("controller")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var alert map[string]any
	if !executortest.Poll(func() bool { alert = alerts.find("controller"); return alert != nil }) {
		t.Fatalf("no alert for controller; script stderr:\n%s", b.stderr())
	}
	if alert["exit_code"] != float64(137) || alert["machine"] != "local" || alert["robot"] != "demo-bot" || alert["alert"] != "process exited" || alert["time"] == nil {
		t.Errorf("alert fields: %v", alert)
	}
	if alerts.find("homing") != nil {
		t.Error("a successful one-shot was reported as unexpected")
	}
	// Ctrl-C ends the script (130); the processes keep running.
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	if code := b.wait(t); code != 130 {
		t.Errorf("script after Ctrl-C: exit %d", code)
	}
	for _, p := range []string{"roscore", "planner"} {
		if s := e.state(p); s != "READY" {
			t.Errorf("%s is %s after the script ended", p, s)
		}
	}
	// The plugin command.
	r := e.mustRun("calibrate", "z")
	if !strings.Contains(r.stderr, "calibrated axis z: homed") || !strings.Contains(r.stdout, "homing demo-bot axis z") {
		t.Errorf("calibrate:\n%s", r)
	}
	// A stop asked for is no alert.
	e.mustRun("kill", "--all")
	if alerts.find("planner") != nil {
		t.Error("an expected stop was alerted")
	}
}

func TestLuaErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: le, plugins: [plugin.lua]}
a: {cmd: sleep 300}
`)
	write := func(name, code string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	untouched := func(what string) {
		if out, err := e.tmux("list-windows", "-a"); err == nil && strings.TrimSpace(out) != "" {
			t.Errorf("%s: tmux changed: %s", what, out)
		}
	}
	// A plugin that fails to load stops every command before anything.
	write("plugin.lua", "local launcher = require('launcher')\n\nlauncher.on('ready', function() end\n")
	r := e.run("run", "a")
	if r.code != 2 || !regexp.MustCompile(`plugin\.lua:3: `).MatchString(r.stderr) {
		t.Errorf("broken plugin: %s", r)
	}
	untouched("broken plugin")
	write("plugin.lua", "error('plugin says no')\n")
	r = e.run("run", "a")
	if r.code != 2 || !strings.Contains(r.stderr, "plugin says no") {
		t.Errorf("plugin runtime error: %s", r)
	}
	untouched("failing plugin")
	write("plugin.lua", "-- fine\n")
	// Syntax error in a script: file:line, exit 2, nothing started.
	bad := write("bad.lua", "local launcher = require('launcher')\nlauncher.start('a')\nlocal x = = 1\n")
	r = e.run("script", bad)
	if r.code != 2 || !strings.Contains(r.stderr, "bad.lua:3: ") {
		t.Errorf("syntax error: %s", r)
	}
	untouched("syntax error")
	// Runtime error: traceback, exit 1.
	rt := write("rt.lua", "local function deep() error('kaputt') end\nlocal function mid() deep() end\nmid()\n")
	r = e.run("script", rt)
	if r.code != 1 || !strings.Contains(r.stderr, "rt.lua:1: kaputt") || !strings.Contains(r.stderr, "stack traceback") || !strings.Contains(r.stderr, "rt.lua:2:") {
		t.Errorf("runtime error: %s", r)
	}
	// An unknown check kind in YAML is a config error with file:line.
	e.writeConfig("context: {session: le}\n\na: {cmd: x, ready_check: {check: nosuch}}\n")
	r = e.run("run", "a")
	if r.code != 2 || !strings.Contains(r.stderr, "launcher.yaml:3:") || !strings.Contains(r.stderr, `unknown check kind "nosuch"`) {
		t.Errorf("unknown check kind: %s", r)
	}
	untouched("unknown check kind")
}

func TestCtrlCCancelsScripts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: cc}\na: {cmd: sleep 300}\n")
	// Each case prints "go" once it is where the Ctrl-C should find it;
	// "loading" is interrupted while the Lua host is still loading its
	// modules (the old code exited 1 with a Lua traceback there).
	for _, c := range []struct{ name, code string }{
		{"busy", "local l = require('launcher')\nassert(l.start('a'))\nprint('go')\nwhile true do end\n"},
		{"waiting", "local l = require('launcher')\nassert(l.start('a'))\nprint('go')\nl.sleep(600)\n"},
		{"loading", "local l = require('launcher')\nl.sleep(600)\n"},
	} {
		p := filepath.Join(e.dir, c.name+".lua")
		os.WriteFile(p, []byte(c.code), 0o644)
		b := e.start("script", p)
		if c.name == "loading" {
			// As early as the old failure: the process is READY from the
			// cases before, so the signal lands while modules load.
			e.waitState("a", "READY")
		} else {
			if !executortest.Poll(func() bool { return strings.Contains(b.stdout(), "go\n") }) {
				t.Fatalf("%s script did not reach its loop; output:\n%s\n%s", c.name, b.stdout(), b.stderr())
			}
		}
		_ = b.cmd.Process.Signal(syscall.SIGINT)
		code := b.wait(t)
		// 130 also when the signal comes before the handler is installed
		// (the runtime's default: killed by SIGINT, 128+2).
		if code != 130 {
			t.Errorf("%s: exit %d; output:\n%s\n%s", c.name, code, b.stdout(), b.stderr())
		}
		if e.state("a") != "READY" {
			t.Errorf("%s: the started process did not keep running", c.name)
		}
	}
}

func TestUserPluginDirectoryAppliesToPlainCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: up}\na: {cmd: sleep 300}\n")
	dir := filepath.Join(e.home, ".config", "launcher", "plugins")
	os.MkdirAll(dir, 0o755)
	marker := filepath.Join(e.dir, "ready-seen")
	os.WriteFile(filepath.Join(dir, "hooks.lua"), []byte(fmt.Sprintf(`
local launcher = require("launcher")
local fs = require("fs")
launcher.on("ready", function(ev) fs.write(%q, ev.process) end)
launcher.ready_check("a", function(proc) return fs.exists(%q), "waiting for the go file" end)
`, marker, filepath.Join(e.dir, "go"))), 0o644)
	b := e.start("run", "a")
	e.waitState("a", "STARTING")
	if err := os.WriteFile(filepath.Join(e.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t); code != 0 {
		t.Fatalf("run: %d %s", code, b.stderr())
	}
	data, _ := os.ReadFile(marker)
	if string(data) != "a" {
		t.Errorf("the ready handler of the user plugin did not run: %q", data)
	}
}

func TestLuaTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: lt}\na: {cmd: 'true'}\n")
	e.mustRun("lua-types")
	stub, err := os.ReadFile(filepath.Join(e.dir, ".launcher", "types", "launcher.lua"))
	if err != nil || !strings.Contains(string(stub), "---@meta launcher") || !strings.Contains(string(stub), "function launcher.start(") {
		t.Fatalf("stub: %v %s", err, stub)
	}
	rc, err := os.ReadFile(filepath.Join(e.dir, ".luarc.json"))
	var v map[string]any
	if err != nil || json.Unmarshal(rc, &v) != nil || v["runtime.version"] != "Lua 5.1" {
		t.Errorf(".luarc.json: %v %s", err, rc)
	}
}

// Issue 13, bug 2: --no-plugins stops (and shows) a robot whose YAML uses
// a check kind of a plugin that is broken; a start that needs the kind is
// refused by its check, nothing started.
func TestNoPluginsStopsARobotWithPluginCheckKinds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	plugin := filepath.Join(e.dir, "kinds.lua")
	if err := os.WriteFile(plugin, []byte(`local launcher = require("launcher")
launcher.check("always", function(proc, opts) return true end)
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(fmt.Sprintf(`
context: {session: np, plugins: [%q]}
a: {cmd: sleep 300, ready_check: {check: always}}
b: {cmd: sleep 300}
c: {cmd: sleep 300, depends: [a, b]}
`, plugin))
	e.mustRun("run", "a")
	if err := os.WriteFile(plugin, []byte("this is not lua ("), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("status"); r.code != 2 {
		t.Errorf("status with a broken plugin: %s", r)
	}
	if r := e.run("--no-plugins", "status"); r.code != 0 || !strings.Contains(r.stdout, "READY") {
		t.Errorf("--no-plugins status: %s", r)
	}
	e.extra = append(e.extra, "LAUNCHER_NO_PLUGINS=1")
	if r := e.run("run", "c"); r.code != 2 || !strings.Contains(r.stderr, `unknown check kind "always"`) || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("--no-plugins run of a process whose kind is missing: %s", r)
	}
	if st := e.state("b"); st != "STOPPED" {
		t.Errorf("b is %s after a refused run", st)
	}
	if r := e.run("kill", "--all"); r.code != 0 {
		t.Errorf("--no-plugins kill --all: %s", r)
	}
	if st := e.state("a"); st != "STOPPED" {
		t.Errorf("a is %s after --no-plugins kill --all", st)
	}
}

// The watchdog example (timers): a process whose output goes silent is
// restarted; one that keeps talking is left alone.
func TestWatchdogExample(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: wd}
talker: {cmd: "for i in 1 2 3; do echo tick $i; sleep 0.1; done; echo going quiet; sleep 300"}
chatty: {cmd: "while true; do echo alive; sleep 0.1; done"}
`)
	e.mustRun("run", "talker")
	e.mustRun("run", "chatty")
	first, chatty := e.pid("talker"), e.pid("chatty")
	script, _ := filepath.Abs("../../examples/robot/watchdog.lua")
	wd := e.start("script", script, "talker", "1")
	other := e.start("script", script, "chatty", "1")
	executortest.Eventually(t, "the silent talker is restarted", func() bool {
		st := e.status()["talker"]
		return strings.Contains(wd.stderr(), "talker silent for") && st.State == "READY" && st.PID != nil && *st.PID != first
	})
	executortest.Eventually(t, "the second watchdog watches", func() bool {
		return strings.Contains(other.stderr(), "watching chatty")
	})
	// Two silences' worth of time for chatty, measured by talker's
	// restarts: talker goes silent again 0.3 s after each restart.
	second := e.pid("talker")
	executortest.Eventually(t, "the talker is restarted again", func() bool {
		st := e.status()["talker"]
		return st.PID != nil && *st.PID != second
	})
	if strings.Contains(other.stderr(), "silent for") || e.pid("chatty") != chatty {
		t.Errorf("a process that keeps talking was restarted:\n%s", other.stderr())
	}
	for _, b := range []*bg{wd, other} {
		_ = b.cmd.Process.Signal(syscall.SIGINT)
		if code := b.wait(t); code != 130 {
			t.Errorf("watchdog after Ctrl-C: exit %d\n%s", code, b.stderr())
		}
	}
}

// Issue 13, bug 4, against the real binary: a webhook that takes its time
// and 30 processes stopped at once. Every exit either reaches the webhook
// or is counted in what launcher says it did not deliver; nothing goes
// missing without a word, whether the drain runs out or Ctrl-C cuts it.
func TestEveryAlertIsDeliveredOrCounted(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		received int
		delay    time.Duration
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		received++
		d := delay
		mu.Unlock()
		// The slow receiver: the time between posts is what the test
		// measures, not a stand-in for synchronisation.
		time.Sleep(d)
		w.WriteHeader(204)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/alert"

	const n = 30
	var cfg strings.Builder
	cfg.WriteString("context: {session: wh}\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&cfg, "p%02d: {cmd: sleep 300}\n", i)
	}
	e := newEnv(t, "")
	plugin := filepath.Join(e.dir, "alerts.lua")
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("%q", fmt.Sprintf("p%02d", i)))
	}
	up := filepath.Join(e.dir, "up.lua")
	if err := os.WriteFile(up, []byte(`assert(require("launcher").start({`+strings.Join(names, ", ")+`}))`), 0o644); err != nil {
		t.Fatal(err)
	}
	writePlugin := func(drain int) {
		t.Helper()
		code := fmt.Sprintf(`local launcher = require("launcher")
local http = require("http")
launcher.set_drain_timeout(%d)
launcher.on("exited", function(ev)
  http.post(%q, {process = ev.process}, {timeout = 30})
end)
`, drain, url)
		if err := os.WriteFile(plugin, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.writeConfig(strings.Replace(cfg.String(), "session: wh}", fmt.Sprintf("session: wh, plugins: [%q]}", plugin), 1))
	undelivered := regexp.MustCompile(`events not delivered: (\d+) exited`)
	// check runs one stop of all n and compares the webhook's count with
	// launcher's own account; it returns how many did not arrive.
	check := func(name string, d time.Duration, drain int, interrupt bool) int {
		t.Helper()
		mu.Lock()
		received, delay = 0, d
		mu.Unlock()
		writePlugin(drain)
		e.mustRun("script", up)
		b := e.start("kill", "--all")
		if interrupt {
			// Ctrl-C once every stop is done (each exit seen, so each is
			// an event to account for) and most alerts are still queued;
			// a Ctrl-C in the middle of the stops would leave exits that
			// launcher never saw.
			if !executortest.Poll(func() bool { return strings.Count(b.stdout(), "] stopped (") >= n }) {
				t.Fatalf("%s: the stops did not end; output:\n%s\n%s", name, b.stdout(), b.stderr())
			}
			_ = b.cmd.Process.Signal(syscall.SIGINT)
		}
		code := b.wait(t)
		mu.Lock()
		got := received
		mu.Unlock()
		stderr := b.stderr()
		left := 0
		if m := undelivered.FindStringSubmatch(stderr); m != nil {
			left, _ = strconv.Atoi(m[1])
		}
		// The one handler call that was cut mid-post may or may not have
		// reached the webhook; launcher names it as running.
		inFlight := strings.Contains(stderr, "running: exited handler at ")
		switch {
		case got+left == n:
		case inFlight && got+left == n-1:
		default:
			t.Errorf("%s: %d alerts arrived, %d reported undelivered (in flight: %v), of %d exits; exit %d\n%s",
				name, got, left, inFlight, n, code, stderr)
		}
		// Only what a handler would have got counts (the first CI run of
		// this test reported "17 failed": events no handler wanted).
		if m := regexp.MustCompile(`events not delivered: ([^)\n]*)`).FindStringSubmatch(stderr); m != nil && m[1] != fmt.Sprintf("%d exited", left) {
			t.Errorf("%s: undelivered events of kinds no handler wants: %q", name, m[1])
		}
		if got < n && left == 0 && !inFlight {
			t.Errorf("%s: %d of %d alerts lost without a word:\n%s", name, n-got, n, stderr)
		}
		wantCode := 0
		if interrupt {
			wantCode = 130
		}
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d:\n%s", name, code, wantCode, stderr)
		}
		for i := 0; i < n; i++ {
			if st := e.state(fmt.Sprintf("p%02d", i)); st != "STOPPED" {
				t.Errorf("%s: p%02d is %s after kill --all", name, i, st)
			}
		}
		return n - got
	}
	// A drain long enough for a fast webhook: every alert arrives.
	if lost := check("fast webhook", 20*time.Millisecond, 30, false); lost != 0 {
		t.Errorf("fast webhook: %d alerts did not arrive", lost)
	}
	// A slow webhook and a short drain: the shortfall is counted.
	if lost := check("short drain", 300*time.Millisecond, 1, false); lost == 0 {
		t.Errorf("short drain: every alert arrived; the case tests nothing")
	}
	// Ctrl-C while alerts go out: counted too, and the exit is 130.
	check("ctrl-c", 300*time.Millisecond, 30, true)
}

// TestAnExitHandlerSeesAFastKill: a plugin's exited handler hears of the
// exit a kill causes however fast the kill is: the monitor has looked at
// what runs before the command acts (CI run 47: a kill --all of 30 that
// signalled before the monitor's first look gave no alert and counted
// none).
func TestAnExitHandlerSeesAFastKill(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	heard := filepath.Join(e.dir, "heard")
	plugin := filepath.Join(e.dir, "heard.lua")
	code := fmt.Sprintf(`local launcher = require("launcher")
launcher.on("exited", function(ev)
  local f = assert(io.open(%q, "a")); f:write(ev.process, "\n"); f:close()
end)
`, heard)
	if err := os.WriteFile(plugin, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(fmt.Sprintf("context: {session: fast, plugins: [%q]}\na: {cmd: sleep 300}\n", plugin))
	for round := 0; round < 5; round++ {
		e.mustRun("run", "a")
		_ = os.Remove(heard)
		e.mustRun("kill", "a")
		b, _ := os.ReadFile(heard)
		if string(b) != "a\n" {
			t.Fatalf("round %d: the exited handler heard %q of the kill of a", round, b)
		}
	}
}
