package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// graphYAML is a fresh graph of n independent processes under one root.
func graphYAML(session string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "context:\n  session: %s\n", session)
	var deps []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p%02d", i)
		deps = append(deps, name)
		fmt.Fprintf(&b, "%s:\n  cmd: sleep 300\n", name)
	}
	fmt.Fprintf(&b, "top:\n  cmd: sleep 300\n  depends: [%s]\n", strings.Join(deps, ", "))
	return b.String()
}

// windowsByName counts the windows of the test's tmux server per name.
func (e *tenv) windowsByName() map[string]int {
	e.t.Helper()
	out, err := e.tmux("list-windows", "-a", "-F", "#{window_name}")
	if err != nil {
		e.t.Fatalf("list-windows: %v %s", err, out)
	}
	n := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			n[l]++
		}
	}
	return n
}

// Hardening 1: concurrent runs of one graph start every process once.
func TestConcurrentRunsStartEachProcessOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphYAML("race", 20))
	e.runAll(4, "run", "top")
	for name, n := range e.windowsByName() {
		if n != 1 {
			t.Errorf("%s has %d windows, want 1", name, n)
		}
	}
	if n := len(e.windowsByName()); n != 21 {
		t.Errorf("%d processes have windows, want 21", n)
	}
	r := e.mustRun("kill", "--all")
	if out, _ := e.tmux("list-windows", "-a", "-F", "#{pane_dead}"); strings.Contains(out, "0") {
		t.Errorf("live windows after kill --all:\n%s\n%s", out, r)
	}
}

// Hardening 5: a process's env reaches that process only; a window the
// user opens in the session inherits nothing of launcher's; env values never
// appear on a command line.
func TestEnvIsPerProcessAndOffCommandLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context:
  session: envs
first:
  cmd: echo "first sees [$SECRET_TOKEN]"; sleep 300
  env: {SECRET_TOKEN: hunter2-very-secret}
second:
  cmd: echo "second sees [$SECRET_TOKEN] tag [$LAUNCHER_TAG]"; sleep 300
  depends: [first]
`)
	e.mustRun("run", "second")
	e.waitLog("envs", "first", "first sees [hunter2-very-secret]")
	e.waitLog("envs", "second", "second sees [] tag [")
	if out, _ := e.tmux("show-environment", "-t", "=envs:"); strings.Contains(out, "SECRET_TOKEN") || strings.Contains(out, "LAUNCHER_") {
		t.Errorf("session environment carries launcher's env:\n%s", out)
	}
	// No process of this machine shows the secret on its command line.
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range matches {
		data, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(data), "hunter2-very-secret") {
			t.Errorf("%s shows the secret: %q", f, strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	// A window the user opens in the session carries no tag, and a stop's
	// escalation sweep does not reach it.
	if out, err := e.tmux("new-window", "-d", "-t", "=envs:", "-n", "mine", "bash --norc -c 'echo tag=[$LAUNCHER_TAG]; trap \"\" INT; sleep 300'"); err != nil {
		t.Fatal(out)
	}
	out, _ := e.tmux("list-windows", "-t", "=envs:", "-F", "#{window_name} #{pane_pid}")
	var mine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "mine ") {
			mine = strings.TrimPrefix(l, "mine ")
		}
	}
	environ, _ := os.ReadFile("/proc/" + mine + "/environ")
	if strings.Contains(string(environ), "LAUNCHER_TAG") || strings.Contains(string(environ), "SECRET_TOKEN") {
		t.Errorf("a user's window inherits launcher's env: %q", environ)
	}
	e.mustRun("kill", "--all")
	if out, _ := e.tmux("list-windows", "-t", "=envs:", "-F", "#{window_name} #{pane_dead}"); !strings.Contains(out, "mine 0") {
		t.Errorf("the user's window was touched by kill --all:\n%s", out)
	}
}

// Hardening 15: a long command runs (it is not limited by tmux's message size).
func TestLongCommandRuns(t *testing.T) {
	t.Parallel()
	long := "echo start; : " + strings.Repeat("x", 20000) + "; echo long-done; sleep 300"
	e := newEnv(t, fmt.Sprintf("context:\n  session: longc\nbig:\n  cmd: %q\nsmall:\n  cmd: sleep 300\n", long))
	e.mustRun("run", "big")
	e.waitLog("longc", "big", "long-done")
	if st := e.state("big"); st != "READY" {
		t.Errorf("big is %s", st)
	}
}

// Hardening 7: a process that renames its window stays launcher's.
func TestRenamedWindowStaysManaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context:
  session: ren
namer:
  cmd: printf '\033kevil-title\033\\'; printf 'renamed\n'; sleep 300
`)
	// The user's tmux configuration allows renaming.
	e.tmux("start-server", ";", "set-option", "-g", "allow-rename", "on", ";", "new-session", "-d", "-s", "other")
	e.mustRun("run", "namer")
	e.waitLog("ren", "namer", "renamed")
	if st := e.state("namer"); st != "READY" {
		t.Errorf("namer is %s after printing a title", st)
	}
	e.mustRun("run", "namer")
	if n := e.windowsByName()["namer"]; n != 1 {
		t.Errorf("namer has %d windows after a second run (%v)", n, e.windowsByName())
	}
	e.mustRun("kill", "--all")
	executortest.Eventually(t, "namer stopped", func() bool { return e.state("namer") == "STOPPED" })
	_ = exec.Command("true").Run()
}

// noServer fails the test when the test's tmux server runs (a refused
// command must change nothing).
func (e *tenv) noWindows() {
	e.t.Helper()
	if out, err := e.tmux("list-windows", "-a"); err == nil && strings.TrimSpace(out) != "" {
		e.t.Errorf("windows exist after a refused command:\n%s", out)
	}
}

// Hardening 14: a relative state directory is refused (it would lose every log).
func TestRelativeStateDirRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: rel}\na:\n  cmd: sleep 300\n")
	e.extra = append(e.extra, "LAUNCHER_STATE_DIR=state-rel")
	r := e.run("run", "a")
	if r.code != 2 || !strings.Contains(r.stderr, "LAUNCHER_STATE_DIR must be an absolute path") {
		t.Fatalf("relative state dir: %s", r)
	}
	e.noWindows()
}

// Hardening 16: a socket whose folder does not exist works (the folder is
// created 0700).
func TestSocketFolderCreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: sockf}\na:\n  cmd: sleep 300\n")
	e.sock = filepath.Join(e.dir, "new", "sub", "tmux.sock")
	e.mustRun("run", "a")
	fi, err := os.Stat(filepath.Dir(e.sock))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket folder: %v %v", fi, err)
	}
	if st := e.state("a"); st != "READY" {
		t.Errorf("a is %s", st)
	}
}

// Hardening 9: state directories, helpers and sockets other users could
// control are refused with the path and the reason; nothing runs.
func TestUnsafePathsRefused(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		executortest.Skip(t, "needs root to give files to another user")
	}
	const nobody = 65534
	cfg := "context: {session: unsafe}\na:\n  cmd: touch " + "ran-a; sleep 300\n"
	t.Run("world-writable state dir", func(t *testing.T) {
		e := newEnv(t, cfg)
		os.MkdirAll(e.stateDir, 0o777)
		os.Chmod(e.stateDir, 0o777)
		r := e.run("run", "a")
		if r.code != 2 || !strings.Contains(r.stderr, e.stateDir) || !strings.Contains(r.stderr, "777") {
			t.Fatalf("%s", r)
		}
		e.noWindows()
	})
	t.Run("state dir of another user with a planted helper", func(t *testing.T) {
		e := newEnv(t, cfg)
		planted := filepath.Join(e.dir, "planted-ran")
		bin := filepath.Join(e.stateDir, "bin")
		os.MkdirAll(bin, 0o700)
		for _, n := range []string{"logwriter.pl", "prologue.bash"} {
			os.WriteFile(filepath.Join(bin, n), []byte("system('touch "+planted+"');\ntouch "+planted+"\n"), 0o755)
		}
		os.Chown(bin, nobody, nobody)
		os.Chown(e.stateDir, nobody, nobody)
		r := e.run("run", "a")
		if r.code != 2 || !strings.Contains(r.stderr, "uid 65534") {
			t.Fatalf("%s", r)
		}
		if _, err := os.Stat(planted); err == nil {
			t.Error("a planted helper ran")
		}
		e.noWindows()
	})
	t.Run("tmux socket of another user", func(t *testing.T) {
		e := newEnv(t, cfg)
		// Another user's server.
		cmd := exec.Command("tmux", "-S", e.sock, "-f", "/dev/null", "new-session", "-d", "-s", "theirs", "sleep 300")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatal(string(out))
		}
		os.Chown(e.sock, nobody, nobody)
		r := e.run("kill", "--all")
		if r.code != 2 || !strings.Contains(r.stderr, "owned by uid 65534") {
			t.Fatalf("%s", r)
		}
		if out, _ := e.tmux("list-windows", "-a", "-F", "#{pane_dead}"); strings.TrimSpace(out) != "0" {
			t.Errorf("their window was touched: %q", out)
		}
	})
	t.Run("log through a planted symlink", func(t *testing.T) {
		e := newEnv(t, cfg)
		target := filepath.Join(e.dir, "victim")
		os.WriteFile(target, nil, 0o644)
		os.MkdirAll(filepath.Join(e.stateDir, "unsafe"), 0o700)
		os.Symlink(target, filepath.Join(e.stateDir, "unsafe", "a.log"))
		r := e.run("run", "a")
		if r.code != 2 || !strings.Contains(r.stderr, "symbolic link") {
			t.Errorf("a symlinked log: %s", r)
		}
		if data, _ := os.ReadFile(target); len(data) != 0 {
			t.Errorf("the log was written through a symlink: %q", data)
		}
		e.noWindows()
	})
	t.Run("pre-made logs", func(t *testing.T) {
		e := newEnv(t, cfg)
		log := filepath.Join(e.stateDir, "unsafe", "a.log")
		os.MkdirAll(filepath.Dir(log), 0o700)
		os.WriteFile(log, nil, 0o666)
		os.Chmod(log, 0o666)
		os.Chown(log, nobody, nobody)
		if r := e.run("run", "a"); r.code != 2 || !strings.Contains(r.stderr, "owned by uid 65534") {
			t.Errorf("another user's log file: %s", r)
		}
		e.noWindows()
		os.Chown(log, 0, 0)
		e.mustRun("run", "a")
		if fi, err := os.Stat(log); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("a world-writable log was not made private: %v %v", fi.Mode(), err)
		}
	})
}

// Hardening 6: mon never destroys a session launcher did not create.
func TestMonLeavesForeignSessionAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: robot}\na:\n  cmd: sleep 300\n")
	if out, err := e.tmux("new-session", "-d", "-s", "robot_mon", "sleep 300"); err != nil {
		t.Fatal(out)
	}
	before, _ := e.tmux("list-panes", "-t", "=robot_mon:", "-F", "#{pane_pid}")
	r := e.run("mon")
	if r.code == 0 || !strings.Contains(r.stderr, "robot_mon") {
		t.Fatalf("mon over a foreign session: %s", r)
	}
	after, _ := e.tmux("list-panes", "-t", "=robot_mon:", "-F", "#{pane_pid}")
	if before != after || strings.TrimSpace(after) == "" {
		t.Errorf("foreign session changed: %q -> %q", before, after)
	}
	// Its own monitor session is replaced on a second mon.
	e.tmux("kill-session", "-t", "=robot_mon:")
	e.mustRun("mon")
	e.mustRun("mon")
}

// Hardening 11: hostile config input ends quickly with exit 2: a merge-key
// alias bomb, an endless device, a FIFO nobody writes.
func TestHostileConfigInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: hostile}\na:\n  cmd: sleep 1\n")
	bomb, _ := os.ReadFile("../../engine/config/testdata/broken/37-merge-bomb.yaml")
	bombPath := filepath.Join(e.dir, "bomb.yaml")
	os.WriteFile(bombPath, bomb, 0o644)
	fifo := filepath.Join(e.dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{bombPath, "alias bomb"},
		{"/dev/zero", "not a regular file"},
		{fifo, "it is a FIFO"},
	} {
		r := e.run("-c", c.path, "validate")
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, c.path) {
			t.Errorf("%s: %s", c.path, r)
		}
	}
}

// Hardening 20 and 22: watch and pstree refuse a CONFLICT window; pstree
// shows the user's command, not launcher's prologue.
func TestWatchAndPstreeRefuseConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: cfl}\nmine:\n  cmd: sleep 300\ntheirs:\n  cmd: sleep 300\n")
	e.mustRun("run", "mine")
	if out, err := e.tmux("new-window", "-d", "-t", "=cfl:", "-n", "theirs", "sleep 300"); err != nil {
		t.Fatal(out)
	}
	for _, args := range [][]string{{"watch", "theirs"}, {"status", "--pstree", "theirs"}} {
		r := e.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "unmanaged tmux window") {
			t.Errorf("%v: %s", args, r)
		}
	}
	r := e.mustRun("status", "--pstree", "mine")
	if strings.Contains(r.stdout, "trap") || strings.Contains(r.stdout, "prologue") || !strings.Contains(r.stdout, "bash -ic sleep 300") ||
		!regexp.MustCompile(`\n\s+PID: \d+ \(sleep 300\)`).MatchString(r.stdout) {
		t.Errorf("pstree:\n%s", r)
	}
}

// Hardening 18: a path param in its quoted form is data, whatever the
// folder is called.
func TestConfigDirQuotedForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: qdir}\n")
	dir := filepath.Join(e.dir, "my robot $(touch PWNED)")
	os.MkdirAll(dir, 0o755)
	e.cfg = filepath.Join(dir, "launcher.yaml")
	e.writeConfig("context: {session: qdir}\nat:\n  cmd: cd {config_dir:q} && echo \"in [$PWD]\"; sleep 300\n")
	e.mustRun("run", "at")
	e.waitLog("qdir", "at", "in ["+dir+"]")
	for _, d := range []string{e.dir, dir, e.home} {
		if _, err := os.Stat(filepath.Join(d, "PWNED")); err == nil {
			t.Errorf("the folder name ran as a command (%s/PWNED)", d)
		}
	}
}

// Hardening 4: a thousand processes and a one-shot that needs them all come
// up with exit 0 (bookkeeping behind a long queue of tmux work never turns a
// success into a failure).
func TestThousandProcesses(t *testing.T) {
	const n = 1000
	var b strings.Builder
	b.WriteString("context: {session: big}\n")
	var deps []string
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "p%04d:\n  cmd: sleep 600\n", i)
		deps = append(deps, fmt.Sprintf("p%04d", i))
	}
	fmt.Fprintf(&b, "done:\n  cmd: echo all up\n  persistent: false\n  depends: [%s]\n", strings.Join(deps, ", "))
	e := newEnv(t, b.String())
	// 80 s alone on two cores with -race; a hang is bounded at five times
	// the suite's patience (two CPU burners and the other packages' tests
	// beside it took more than three minutes).
	r := e.runWithin(5*executortest.Patience, "run", "done")
	if r.code != 0 {
		t.Fatalf("exit %d; last lines:\n%s\n%s", r.code, lastN(r.stdout, 5), r.stderr)
	}
	// No step failed on a timeout on the way (a tmux server slow to answer
	// under load may be said, in an info line, and waited out).
	for _, l := range strings.Split(r.stdout+r.stderr, "\n") {
		if strings.Contains(l, "deadline") && (strings.Contains(l, "✗") || strings.HasPrefix(l, "launcher:")) {
			t.Errorf("a step failed on a timeout: %s", l)
		}
	}
	ready := 0
	for _, st := range e.status() {
		if st.State == "READY" {
			ready++
		}
	}
	if ready != n {
		t.Errorf("%d of %d processes READY", ready, n)
	}
}

func lastN(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Hardening 3: a run that takes over a process another launcher started
// (and died during) gives its check this run's $LAUNCHER_LOG_START; a READY
// process is checked again before dependants rely on it.
func TestTakeoverChecksReadiness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	gate, okFile := filepath.Join(e.dir, "GO"), filepath.Join(e.dir, "OK")
	e.writeConfig(fmt.Sprintf(`
context: {session: take}
slow:
  cmd: while [ ! -e %[1]s ]; do sleep 0.05; done; echo up-now; sleep 300
  ready_check: tail -c "+$LAUNCHER_LOG_START" "$LAUNCHER_LOG" | grep -q up-now
  ready_timeout: 20s
base:
  cmd: touch %[2]s; sleep 300
  ready_check: test -e %[2]s
  ready_timeout: 1s
child:
  cmd: sleep 300
  depends: [base]
`, gate, okFile))
	b := e.start("run", "slow")
	e.waitState("slow", "STARTING")
	_ = b.cmd.Process.Kill()
	b.wait(t)
	later := e.start("run", "slow")
	os.WriteFile(gate, nil, 0o644)
	if code := later.wait(t); code != 0 {
		t.Fatalf("takeover run: exit %d\n%s\n%s", code, later.stdout(), later.stderr())
	}
	if n := e.windowsByName()["slow"]; n != 1 {
		t.Errorf("slow has %d windows", n)
	}

	e.mustRun("run", "base")
	os.Remove(okFile)
	r := e.run("run", "child")
	if r.code != 1 || !strings.Contains(r.stdout, "not ready any more") {
		t.Errorf("dependency no longer ready: %s", r)
	}
	if st := e.state("child"); st != "STOPPED" {
		t.Errorf("child started on a dependency that is not ready: %s", st)
	}
}

// Hardening 2: run and kill --all racing. A stop wins: whatever the
// interleaving, nothing runs afterwards whose dependency is down, and the
// run that lost says so.
func TestRunAndKillRace(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("context: {session: rk}\n")
	levels, width := 4, 3
	for l := 0; l < levels; l++ {
		for i := 0; i < width; i++ {
			fmt.Fprintf(&b, "l%d_%d:\n  cmd: sleep 300\n  ready_check: sleep 0.1\n", l, i)
			if l > 0 {
				fmt.Fprintf(&b, "  depends: [l%d_0, l%d_1, l%d_2]\n", l-1, l-1, l-1)
			}
		}
	}
	fmt.Fprintf(&b, "top:\n  cmd: sleep 300\n  depends: [l%d_0, l%d_1, l%d_2]\n", levels-1, levels-1, levels-1)
	e := newEnv(t, b.String())
	deps := map[string][]string{"top": {fmt.Sprintf("l%d_0", levels-1), fmt.Sprintf("l%d_1", levels-1), fmt.Sprintf("l%d_2", levels-1)}}
	for l := 1; l < levels; l++ {
		for i := 0; i < width; i++ {
			deps[fmt.Sprintf("l%d_%d", l, i)] = []string{fmt.Sprintf("l%d_0", l-1), fmt.Sprintf("l%d_1", l-1), fmt.Sprintf("l%d_2", l-1)}
		}
	}
	for trial := 0; trial < levels; trial++ {
		run := e.start("run", "top")
		// The race: the kill goes out the moment level `trial` has a
		// ready process, while the levels above it start.
		mark := fmt.Sprintf("[l%d_0] ready", trial)
		executortest.Eventually(t, "the bring-up reaches "+mark, func() bool { return strings.Contains(run.stdout(), mark) })
		kill := e.start("kill", "--all")
		if code := kill.wait(t); code != 0 {
			t.Fatalf("trial %d: kill exit %d\n%s%s", trial, code, kill.stdout(), kill.stderr())
		}
		code := run.wait(t)
		st := e.status()
		up := func(n string) bool { s := st[n].State; return s == "READY" || s == "RUNNING" || s == "STARTING" }
		for p, ds := range deps {
			for _, d := range ds {
				if up(p) && !up(d) {
					t.Errorf("trial %d: %s is %s while its dependency %s is %s (run exit %d)\n%s", trial, p, st[p].State, d, st[d].State, code, run.stdout())
				}
			}
		}
		if code != 0 && !strings.Contains(run.stdout()+run.stderr(), "stop") {
			t.Errorf("trial %d: run failed without saying a stop won:\n%s%s", trial, run.stdout(), run.stderr())
		}
		e.mustRun("kill", "--all")
	}
}

// Hardening 10: a plugin another user could have written is refused, even
// on a plain status; --no-plugins keeps status and kill usable.
func TestUnsafePluginRefused(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		executortest.Skip(t, "needs root to give files to another user")
	}
	e := newEnv(t, "context: {session: plug}\na:\n  cmd: sleep 300\n")
	dir := filepath.Join(e.home, ".config", "launcher", "plugins")
	os.MkdirAll(dir, 0o755)
	ran := filepath.Join(e.dir, "evil-ran")
	os.WriteFile(filepath.Join(dir, "evil.lua"), []byte(fmt.Sprintf("io.open(%q, 'w'):close()\n", ran)), 0o644)
	os.Chown(filepath.Join(dir, "evil.lua"), 65534, 65534)
	r := e.run("status")
	if r.code != 2 || !strings.Contains(r.stderr, "evil.lua") || !strings.Contains(r.stderr, "uid 65534") || !strings.Contains(r.stderr, "--no-plugins") {
		t.Errorf("status with another user's plugin: %s", r)
	}
	os.Chown(filepath.Join(dir, "evil.lua"), 0, 0)
	os.Chmod(dir, 0o777)
	r = e.run("status")
	if r.code != 2 || !strings.Contains(r.stderr, "writable by other users") && !strings.Contains(r.stderr, "0777") {
		t.Errorf("status with a world-writable plugin folder: %s", r)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the plugin ran")
	}
	for _, args := range [][]string{{"status", "--no-plugins"}, {"--no-plugins", "kill", "--all"}} {
		if r := e.run(args...); r.code != 0 {
			t.Errorf("%v: %s", args, r)
		}
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the plugin ran with --no-plugins")
	}
}

// Hardening 25: a Lua ready check that raises fails the start at once with
// its message (one traceback), instead of being retried forever.
func TestRaisingLuaCheckFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	plugin := filepath.Join(e.dir, "checks.lua")
	os.WriteFile(plugin, []byte(`
local launcher = require("launcher")
launcher.ready_check("broken", function(proc) error("sensor table missing") end)
`), 0o644)
	e.writeConfig(fmt.Sprintf("context: {session: raise, plugins: [%q]}\nbroken:\n  cmd: sleep 300\n", plugin))
	r := e.run("run", "broken")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "sensor table missing") {
		t.Fatalf("raising check: %s", r)
	}
	if n := strings.Count(r.stderr, "stack traceback"); n > 1 {
		t.Errorf("%d tracebacks, want at most 1:\n%s", n, r.stderr)
	}
	if st := e.state("broken"); st != "RUNNING" {
		t.Errorf("the process is %s; a failed check leaves it running", st)
	}
}

// Hardening 17: a stopped (SIGSTOP) tmux server makes status say so within
// a bounded time, and Ctrl-C acts at once.
func TestStoppedTmuxServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: stp}\na:\n  cmd: sleep 300\n")
	e.mustRun("run", "a")
	out, err := e.tmux("display-message", "-p", "#{pid}")
	if err != nil {
		t.Fatal(out)
	}
	var server int
	fmt.Sscan(strings.TrimSpace(out), &server)
	syscall.Kill(server, syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(server, syscall.SIGCONT) })

	// The status waits at most ListTimeout (10 s) on the stopped server: a
	// loaded machine may not see its tmux child in that window, so it is
	// tried again until the Ctrl-C lands while it waits.
	interrupted := false
	for try := 0; try < 10 && !interrupted; try++ {
		b := e.start("status")
		executortest.Eventually(t, "status waits on the stopped server, or ends", func() bool {
			select {
			case <-b.done:
				return true
			default:
			}
			return hasChild(b.cmd.Process.Pid, "tmux")
		})
		select {
		case <-b.done:
			continue // it gave up before the poll saw it wait
		default:
		}
		b.cmd.Process.Signal(syscall.SIGINT)
		if code := b.wait(t); code != 130 {
			t.Errorf("Ctrl-C during a hung status: exit %d\n%s", code, b.stderr())
		}
		interrupted = true
	}
	if !interrupted {
		t.Error("no status was seen waiting on the stopped server in 10 tries")
	}

	r := e.run("status", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, "UNAVAILABLE") || !strings.Contains(r.stdout, "did not answer within") {
		t.Errorf("status with a stopped server: %s", r)
	}
}

// hasChild reports whether pid has a child process whose name starts with
// comm (tmux names its client "tmux: client").
func hasChild(pid int, comm string) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.Index(s, "("), strings.LastIndex(s, ")")
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) > 1 && strings.HasPrefix(s[open+1:end], comm) && fields[1] == fmt.Sprint(pid) {
			return true
		}
	}
	return false
}

// Hardening 21: plan shows the exact command line that runs on the target,
// copy-pasteable (docker exec -it … bash -ic '…' behind ssh for a remote
// container; -i for its check).
func TestPlanShowsExactCommandLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: pl}
drv:
  cmd: ros2 run drv node --ros-args -p path:=/tmp/x.yaml
  docker: kyon-dev
  machine: kyon@10.0.0.2:2222
  ready_check: timeout 5 ros2 topic echo /x --once
loc:
  cmd: echo "it's [$GREETING] in $PWD"
  env: {GREETING: "hello world"}
  cwd: /tmp
`)
	r := e.mustRun("plan", "drv")
	for _, want := range []string{
		`runs:  ssh -t -p 2222 kyon@10.0.0.2 'docker exec -it kyon-dev bash -ic '\''ros2 run drv node --ros-args -p path:=/tmp/x.yaml'\'''`,
		`check: ssh -p 2222 kyon@10.0.0.2 'docker exec -i kyon-dev bash -ic '\''timeout 5 ros2 topic echo /x --once'\'''`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan lacks %s\n%s", want, r.stdout)
		}
	}
	r = e.mustRun("plan", "loc")
	var line string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "runs:") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "runs:"))
		}
	}
	out, err := exec.Command("bash", "-c", line).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "it's [hello world] in /tmp") {
		t.Errorf("pasting %q: %v %s", line, err, out)
	}
	var doc struct {
		Processes []struct {
			Name        string `json:"name"`
			CommandLine string `json:"command_line"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("plan", "--json", "loc").stdout), &doc); err != nil || len(doc.Processes) != 1 || doc.Processes[0].CommandLine != line {
		t.Errorf("plan --json command_line: %+v %v", doc, err)
	}
}

// Hardening 23: help never runs a plugin command; help and unknown
// commands have the right exit codes; --help before -c lists plugin commands.
func TestHelpAndPluginCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ran := filepath.Join(e.dir, "cmd-ran")
	plugin := filepath.Join(e.dir, "cmds.lua")
	os.WriteFile(plugin, []byte(fmt.Sprintf(`
local launcher = require("launcher")
launcher.command("homing", {help = "home the robot", usage = "[axis]"}, function(args)
  io.open(%q, "w"):close()
  if args[1] == "bad" then error("axis bad is not calibrated") end
  if args[1] == "three" then return 3 end
end)
`, ran)), 0o644)
	e.writeConfig(fmt.Sprintf("context: {session: hp, plugins: [%q]}\na:\n  cmd: sleep 300\n", plugin))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"homing", "--help"}, 0, "home the robot"},
		{[]string{"homing", "-h"}, 0, "home the robot"},
		{[]string{"help", "homing"}, 0, "home the robot"},
		{[]string{"help"}, 0, "homing"},
		{[]string{"help", "run"}, 0, "launcher run"},
		{[]string{"--help", "-c", e.cfg}, 0, "homing"},
		{[]string{"nosuchcmd"}, 2, `unknown command "nosuchcmd"`},
		{[]string{"help", "nosuch"}, 2, `unknown command "nosuch"`},
	} {
		r := e.run(c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("%v: want exit %d and %q: %s", c.args, c.code, c.want, r)
		}
	}
	// From a folder without a config and with no $LAUNCHER_CONFIG: only the
	// -c after --help names the config.
	cmd := exec.Command(launcherBin, "--help", "-c", e.cfg)
	cmd.Env = append(e.environ(), "LAUNCHER_CONFIG=")
	cmd.Dir = e.home
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "homing") {
		t.Errorf("--help -c CFG from elsewhere: %v\n%s", err, out)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("asking for help ran the plugin command")
	}
	e.mustRun("homing")
	if _, err := os.Stat(ran); err != nil {
		t.Error("the plugin command does not run")
	}
	// Its failure is a command's error at the plugin's line: no "script
	// failed", no traceback (issue 13, bug 7).
	r := e.run("homing", "bad")
	if r.code != 1 || !strings.Contains(r.stderr, "launcher: homing: "+plugin+":5: axis bad is not calibrated") ||
		strings.Contains(r.stderr, "script failed") || strings.Contains(r.stderr, "traceback") {
		t.Errorf("a failing plugin command: %s", r)
	}
	// The number it returns is its exit code, without a message.
	if r := e.run("homing", "three"); r.code != 3 || r.stderr != "" {
		t.Errorf("a plugin command that returns 3: %s", r)
	}
}

// Hardening 24: handlers finish on every exit path (a failed bring-up's
// alerts all arrive), and a handler that never yields is bounded: the run
// ends, and Ctrl-C during it exits 130.
func TestHandlersRunOnEveryExitPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	alerts := filepath.Join(e.dir, "alerts")
	plugin := filepath.Join(e.dir, "alerts.lua")
	os.WriteFile(plugin, []byte(fmt.Sprintf(`
local launcher = require("launcher")
launcher.on("failed", function(ev)
  launcher.sleep(0.3) -- a slow webhook
  local f = io.open(%q, "a"); f:write(ev.process, "\n"); f:close()
end)
launcher.on("ready", {process = "spin"}, function(ev) while true do end end)
`, alerts)), 0o644)
	var b strings.Builder
	fmt.Fprintf(&b, "context: {session: alerts, plugins: [%q]}\n", plugin)
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&b, "n%d:\n  cmd: sleep 300\n  ready_check: \"false\"\n  ready_timeout: 500ms\n", i)
	}
	b.WriteString("all:\n  cmd: sleep 300\n  depends: [n0, n1, n2, n3, n4, n5]\nspin:\n  cmd: sleep 300\n")
	e.writeConfig(b.String())
	r := e.run("run", "all")
	if r.code != 1 {
		t.Fatalf("run: %s", r)
	}
	data, _ := os.ReadFile(alerts)
	for i := 0; i < 6; i++ {
		if !strings.Contains(string(data), fmt.Sprintf("n%d\n", i)) {
			t.Errorf("alert for n%d lost; alerts:\n%s\n%s", i, data, r)
		}
	}

	r = e.run("run", "spin")
	if r.code != 0 || !strings.Contains(r.stderr, "still busy after 5s were stopped (running: ready handler at ") {
		t.Errorf("a busy handler: %s", r)
	}
	e.mustRun("kill", "spin")
	bg := e.start("run", "spin")
	executortest.Eventually(t, "spin is ready", func() bool { return strings.Contains(bg.stdout(), "[spin] ready") })
	bg.cmd.Process.Signal(syscall.SIGINT)
	if code := bg.wait(t); code != 130 {
		t.Errorf("Ctrl-C with a busy handler: exit %d\n%s", code, bg.stderr())
	}
}

// Hardening 27: the Lua API's rough edges, asserted in Lua against real tmux.
func TestLuaAPIEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: edges, params: {robot: kyon}}
a:
  cmd: echo hello-a; sleep 300
  env: {FOO: bar}
  ready_check: "true"
  ready_timeout: 5s
  variants:
    verbose: {cmd: "{cmd} -v"}
    mode:
      - sim: {params: {x: "1"}}
      - real: {params: {x: "2"}}
b:
  cmd: sleep 300
  depends: [a]
`)
	script := filepath.Join(e.dir, "edges.lua")
	os.WriteFile(script, []byte(`
local launcher = require("launcher")
local names = {}
for name, p in pairs(launcher.config.processes) do names[#names + 1] = name end
table.sort(names)
assert(table.concat(names, ",") == "a,b", table.concat(names, ","))
local params = {}
for k, v in pairs(launcher.config.params) do params[#params + 1] = k .. "=" .. v end
assert(params[1] == "robot=kyon", tostring(params[1]))
local a = launcher.config.processes.a
assert(a.env.FOO == "bar" and a.ready_check.cmd == "true" and a.ready_timeout == 5, "process fields")
assert(#a.variants == 2 and a.variants[2].name == "mode" and a.variants[2].group and a.variants[2].choices[2] == "real", "variants")
local deps = {}
for _, d in ipairs(launcher.config.processes.b.depends) do deps[#deps + 1] = d end
assert(deps[1] == "a", "ipairs over depends")

-- ready fires once per start, not again for a process already running.
local readies = 0
launcher.on("ready", "[ab]", function(ev) readies = readies + 1 end)
assert(launcher.start("b"))
assert(launcher.start("b"))
launcher.sleep(0.3)
assert(readies == 2, "ready handlers ran " .. readies .. " times (want 2: a and b once)")

-- watch gives the process's output only, like run_log.
local w = launcher.watch("a", {lines = 10})
local l = assert(w:next({timeout = 5}))
assert(l == "hello-a", "first watched line: " .. l)
w:close()
assert(launcher.status("a").error == nil, "error of a healthy process")

-- Argument errors under pcall keep the caller's file:line.
local ok, err = pcall(launcher.start, 42)
assert(not ok and err:find("edges.lua:%d+: bad argument #1"), err)
-- A plugin cannot silently replace a built-in check kind.
ok, err = pcall(launcher.check, "tcp", function() return true end)
assert(not ok and err:find('check kind "tcp" exists already'), err)
-- A wrong format type is an error, not "0".
ok, err = pcall(launcher.log.info, "%d items", "many")
assert(not ok and err:find("needs a number"), err)
launcher.log.info("edges all good")
`), 0o644)
	r := e.run("script", script)
	if r.code != 0 || !strings.Contains(r.stderr, "edges all good") {
		t.Fatalf("script: %s", r)
	}
	// lua-types never overwrites a user's file and points the library at
	// its own folder.
	proj := filepath.Join(e.dir, "proj")
	os.MkdirAll(filepath.Join(proj, ".launcher", "types"), 0o755)
	mine := filepath.Join(proj, "log.lua")
	os.WriteFile(mine, []byte("-- my own module\n"), 0o644)
	e.mustRun("lua-types", proj)
	if data, _ := os.ReadFile(mine); string(data) != "-- my own module\n" {
		t.Errorf("lua-types overwrote %s", mine)
	}
	rc, _ := os.ReadFile(filepath.Join(proj, ".luarc.json"))
	if !strings.Contains(string(rc), `".launcher/types"`) {
		t.Errorf(".luarc.json: %s", rc)
	}
	os.WriteFile(filepath.Join(proj, ".launcher", "types", "fs.lua"), []byte("-- not a stub\n"), 0o644)
	if r := e.run("lua-types", proj); r.code != 2 || !strings.Contains(r.stderr, "not a launcher stub") {
		t.Errorf("lua-types over a foreign file: %s", r)
	}
}

// Hardening 28: a one-shot that succeeded in a script is not re-run by
// later starts; deps = false starts only the named process; a list starts
// independent processes concurrently.
func TestScriptOneShotsAndLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	count := filepath.Join(e.dir, "homed")
	e.writeConfig(fmt.Sprintf(`
context: {session: once}
homing:
  cmd: echo x >> %s
  persistent: false
driver:
  cmd: sleep 300
  depends: [homing]
imu:
  cmd: sleep 300
  depends: [homing]
slow1:
  cmd: sleep 300
  ready_check: sleep 1
slow2:
  cmd: sleep 300
  ready_check: sleep 1
`, count))
	script := filepath.Join(e.dir, "once.lua")
	os.WriteFile(script, []byte(`
local launcher = require("launcher")
local time = require("time")
assert(launcher.start("driver"))
assert(launcher.start("imu"))
assert(launcher.start({"driver", "imu"}))
-- deps = false: only the named process (its dependency is up).
assert(launcher.kill("imu"))
assert(launcher.start("imu", {deps = false}))
-- rerun = true runs the one-shot again.
assert(launcher.start("homing", {rerun = true}))
-- Two processes whose checks take 1 s each come up together: both start
-- before either is ready.
local order = {}
launcher.on("started", "slow?", function(ev) order[#order + 1] = "started" end)
launcher.on("ready", "slow?", function(ev) order[#order + 1] = "ready" end)
assert(launcher.start({"slow1", "slow2"}))
local t0 = time.now()
while #order < 4 and time.since(t0) < 10 do launcher.sleep(0.05) end
assert(table.concat(order, " ") == "started started ready ready", "a list started one after the other: " .. table.concat(order, " "))
launcher.log.info("once all good")
`), 0o644)
	r := e.run("script", script)
	if r.code != 0 || !strings.Contains(r.stderr, "once all good") {
		t.Fatalf("script: %s", r)
	}
	data, _ := os.ReadFile(count)
	if n := strings.Count(string(data), "x"); n != 2 {
		t.Errorf("homing ran %d times, want 2 (once, then once on rerun)", n)
	}
	// A one-shot that is the session's first window closes it (and the
	// tmux server with it) when it succeeds: the next spawn creates both
	// again.
	e.tmux("kill-server")
	e.mustRun("run", "driver")
}

// onePID waits until exactly one process of proc runs cmd and returns it.
func (e *tenv) onePID(proc, cmd string) int {
	e.t.Helper()
	var pid int
	executortest.Eventually(e.t, proc+" runs "+cmd, func() bool {
		pids := e.taggedPIDs(proc, cmd)
		if len(pids) == 1 {
			pid = pids[0]
		}
		return len(pids) == 1
	})
	return pid
}

// taggedPIDs are the pids of this test world's processes (their
// LAUNCHER_LOG is in its state directory) whose environment holds
// LAUNCHER_PROCESS=proc and whose command line is cmd.
func (e *tenv) taggedPIDs(proc, cmd string) []int {
	var pids []int
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range envs {
		env, err := os.ReadFile(f)
		vars := "\x00" + string(env)
		if err != nil || !strings.Contains(vars, "\x00LAUNCHER_PROCESS="+proc+"\x00") || !strings.Contains(vars, "\x00LAUNCHER_LOG="+e.stateDir+"/") {
			continue
		}
		dir := filepath.Dir(f)
		line, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		// The exact command line: a parent such as `setsid -f sleep 3001`
		// (about to exit) or a process in the middle of exec is not it.
		if strings.TrimSpace(strings.ReplaceAll(string(line), "\x00", " ")) == cmd {
			var pid int
			fmt.Sscan(filepath.Base(dir), &pid)
			pids = append(pids, pid)
		}
	}
	return pids
}

// Hardening 8: processes that outlive their pane. A stop ends a daemon that
// escaped with setsid; after the tmux server is gone, status shows ORPHANED
// with the pids (never STOPPED), run refuses a second copy, kill ends them.
func TestProcessesThatOutliveTheirPane(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: orph}
daemon:
  cmd: setsid -f sleep 3001; sleep 300
hupper:
  cmd: nohup sleep 3002 >/dev/null 2>&1 & sleep 300
`)
	e.mustRun("run", "daemon")
	d := e.onePID("daemon", "sleep 3001")
	e.mustRun("kill", "daemon")
	executortest.Eventually(t, "the escaped daemon ends with its run", func() bool { return !alive(d) })
	if st := e.state("daemon"); st != "STOPPED" {
		t.Errorf("daemon is %s after kill", st)
	}

	e.mustRun("run", "hupper")
	child := e.onePID("hupper", "sleep 3002")
	e.tmux("kill-server")
	st := e.status()["hupper"]
	if st.State != "ORPHANED" || !strings.Contains(st.Error, fmt.Sprint(child)) {
		t.Fatalf("after kill-server: %+v (child %d alive: %v)", st, child, alive(child))
	}
	if r := e.run("run", "hupper"); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "earlier run still run") {
		t.Errorf("run next to an orphan: %s", r)
	}
	if n := len(e.taggedPIDs("hupper", "sleep 3002")); n != 1 {
		t.Errorf("%d copies of the child run", n)
	}
	e.mustRun("kill", "hupper")
	executortest.Eventually(t, "kill ends the orphan", func() bool { return !alive(child) })
	if st := e.state("hupper"); st != "STOPPED" {
		t.Errorf("hupper is %s after kill", st)
	}
	e.mustRun("run", "hupper")
	e.mustRun("kill", "hupper") // its nohup'd child would outlive the test
}

// Issue 12, finding 4: a daemon a one-shot leaves behind (setsid) is found
// by the run's tag like any process's: status shows the one-shot ORPHANED
// with its pid (it showed STOPPED), kill ends it (it did not).
func TestOneShotDaemonIsFoundAndEnded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: osd}
setup:
  cmd: setsid -f sleep 3003; echo daemon started
  persistent: false
`)
	e.mustRun("run", "setup")
	d := e.onePID("setup", "sleep 3003")
	st := e.status()["setup"]
	if st.State != "ORPHANED" || !strings.Contains(st.Error, fmt.Sprint(d)) {
		t.Errorf("a one-shot whose daemon runs: %+v", st)
	}
	e.mustRun("kill", "setup")
	executortest.Eventually(t, "kill ends the one-shot's daemon", func() bool { return !alive(d) })
	if st := e.state("setup"); st != "STOPPED" {
		t.Errorf("setup is %s after kill", st)
	}
}
