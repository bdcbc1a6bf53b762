package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/shell"
)

// concertWrapper is concert_launcher's wrapper script (testdata), as its
// windows run it.
var concertWrapper, _ = filepath.Abs("testdata/concert_launcher_wrapper.bash")

// concertRun starts processes on the test's tmux server exactly as
// concert_launcher (master 625cf46) does (seed-behaviour.md §3.2–3.3): one
// window per process in session, running the wrapper with both arguments
// shell-quoted, tagged @concert_launcher_managed, remain-on-exit, and a
// session per process grouped with session. Logs go to dir/NAME.stdout.
// It returns when each wrapper has started its command.
func concertRun(t *testing.T, e *tenv, session, dir string, procs ...[2]string) {
	t.Helper()
	tm := func(args ...string) {
		t.Helper()
		if out, err := e.tmux(args...); err != nil {
			t.Fatalf("tmux %q: %v\n%s", args, err, out)
		}
	}
	// What concert_launcher leaves behind (its `script` outlives a closed
	// window) ends with the test: every process of this tmux server.
	t.Cleanup(func() {
		fs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, f := range fs {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains("\x00"+string(b), "\x00TMUX="+e.sock+",") {
				pid, _ := strconv.Atoi(strings.Split(f, "/")[2])
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	for i, pc := range procs {
		name, cmd := pc[0], pc[1]
		pane := concertWrapper + " " + shell.Quote(name) + " " + shell.Quote(cmd)
		env := "CONCERT_LAUNCHER_STDOUT_PATH=" + dir
		if i == 0 {
			tm("new-session", "-d", "-s", session, "-n", name, "-e", env, pane)
			for _, o := range [][2]string{{"aggressive-resize", "on"}, {"mouse", "on"}, {"remain-on-exit", "on"}, {"history-limit", "10000"}} {
				tm("set-option", "-t", session, o[0], o[1])
			}
		} else {
			tm("new-window", "-d", "-a", "-t", session, "-n", name, "-e", env, pane)
		}
		target := session + ":" + name
		tm("set-option", "-w", "-t", target, "@concert_launcher_managed", "1")
		tm("set-option", "-w", "-t", target, "remain-on-exit", "on")
		tm("set-option", "-w", "-t", target, "history-limit", "10000")
		tm("new-session", "-d", "-t", session, "-s", name)
	}
	for _, pc := range procs {
		log := filepath.Join(dir, pc[0]+".stdout")
		executortest.Eventually(t, pc[0]+"'s wrapper started", func() bool {
			b, _ := os.ReadFile(log)
			return strings.Contains(string(b), "starting process "+pc[0])
		})
	}
}

// treeOf returns pid and every process below it (from /proc).
func treeOf(pid int) []int {
	children := map[int][]int{}
	ds, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range ds {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		me, _ := strconv.Atoi(strings.Split(d, "/")[2])
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], me)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// withCmdline returns the processes whose command line is exactly argv,
// but for a shell's fork on its way to exec another command (its parent
// has the same command line).
func withCmdline(argv ...string) (pids []int) {
	want := strings.Join(argv, "\x00") + "\x00"
	fs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	match := map[int]bool{}
	for _, f := range fs {
		if b, err := os.ReadFile(f); err == nil && string(b) == want {
			pid, _ := strconv.Atoi(strings.Split(f, "/")[2])
			match[pid] = true
		}
	}
	for pid := range match {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		st := string(b)
		f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
		if pp, _ := strconv.Atoi(f[1]); !match[pp] && f[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Issue 16, switching a live robot: windows concert_launcher started show
// as CONFLICT with their pid and the way out; `adopt --all` takes them over
// with the same pids; from then on status, logs, kill (SIGINT reaches the
// command through the wrapper's `script`, the whole tree ends) and run
// work on them. A window whose process concert_launcher already stopped
// (remain-on-exit) is adopted too, and run starts it again in it.
func TestAdoptConcertLauncherWindows(t *testing.T) {
	t.Parallel()
	executortest.RequireTool(t, "script")
	loop := `while :; do echo tick; sleep 0.2; done`
	stubbornCmd := `trap '' INT; sleep 301`
	// done ends by itself, 5 s after its start: long enough for `run done`
	// to see it up (a persistent process that ends before its start is
	// seen fails the start) however loaded the machine.
	e := newEnv(t, fmt.Sprintf(`
context: {session: robot}
core: {cmd: "echo core up; sleep 300", ready_check: "true"}
ctrl: {cmd: %q, depends: [core]}
done: {cmd: "echo finished; sleep 5"}
stubborn: {cmd: %q, stop_timeout: 2s}
`, loop, stubbornCmd))
	dir := filepath.Join(e.dir, "concert")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	concertRun(t, e, "robot", dir, [2]string{"core", "echo core up; sleep 300"}, [2]string{"ctrl", loop}, [2]string{"done", "echo finished; sleep 5"},
		[2]string{"stubborn", stubbornCmd})
	executortest.Eventually(t, "concert's done exited", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "done.stdout"))
		return strings.Contains(string(b), "process exited with code 0")
	})
	executortest.Eventually(t, "done's window is dead", func() bool {
		return strings.Contains(e.state("done"), "CONFLICT") && e.status()["done"].PID == nil
	})

	st := e.status()
	pids := map[string]int{}
	for _, n := range []string{"core", "ctrl"} {
		row := st[n]
		if row.State != "CONFLICT" || row.PID == nil || !strings.Contains(row.Error, "started by concert_launcher") ||
			!strings.Contains(row.Error, "`launcher adopt "+n+"`") {
			t.Fatalf("%s before adopt: %+v", n, row)
		}
		pids[n] = *row.PID
		if !alive(pids[n]) {
			t.Fatalf("%s: pid %d does not live", n, pids[n])
		}
	}
	if !strings.Contains(st["done"].Error, "ended with code 0") {
		t.Errorf("done before adopt: %+v", st["done"])
	}
	// No second copy: run refuses, nothing new starts.
	if r := e.run("run", "ctrl"); r.code != 1 || !strings.Contains(r.stderr, "launcher adopt") {
		t.Errorf("run before adopt: %s", r)
	}
	if n := len(withCmdline("bash", "-ic", loop)); n != 1 {
		t.Errorf("%d copies of ctrl's loop run", n)
	}
	// A name with no foreign window: nothing changes (plan, check, act).
	e.writeConfig(strings.Replace(mustRead(t, e.cfg), "done:", "extra: {cmd: sleep 1}\ndone:", 1))
	if r := e.run("adopt", "core", "extra"); r.code != 1 || !strings.Contains(r.stderr, "no window 'robot:extra'") {
		t.Errorf("adopt of a process with no window: %s", r)
	}
	if got := e.state("core"); got != "CONFLICT" {
		t.Errorf("a refused adopt changed core: %s", got)
	}

	r := e.mustRun("adopt", "--all")
	for _, want := range []string{
		fmt.Sprintf("adopted core (started by concert_launcher, pid %d kept running): READY", pids["core"]),
		fmt.Sprintf("adopted ctrl (started by concert_launcher, pid %d kept running): READY", pids["ctrl"]),
		"the earlier output is in " + filepath.Join(dir, "ctrl.stdout"),
		"adopted done (started by concert_launcher, its process had ended with code 0)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("adopt --all lacks %q:\n%s", want, r)
		}
	}
	st = e.status()
	for _, n := range []string{"core", "ctrl"} {
		if st[n].State != "READY" || st[n].PID == nil || *st[n].PID != pids[n] {
			t.Errorf("%s after adopt: %+v (pid was %d)", n, st[n], pids[n])
		}
	}
	if st["done"].State != "STOPPED" {
		t.Errorf("done after adopt: %+v", st["done"])
	}
	// Its output goes to launcher's log from now on, after a note.
	log := e.waitLog("robot", "ctrl", "tick")
	if !regexp.MustCompile(`\[launcher\] ctrl adopted from concert_launcher: pid \d+ kept running; its output before this line is in \S+ctrl.stdout`).MatchString(log) {
		t.Errorf("ctrl's log:\n%s", log)
	}
	if r := e.mustRun("logs", "ctrl", "-n", "3"); !strings.Contains(r.stdout, "tick") {
		t.Errorf("logs ctrl: %s", r)
	}
	if r := e.mustRun("adopt", "--all"); !strings.Contains(r.stdout, "nothing to adopt") {
		t.Errorf("a second adopt: %s", r)
	}

	// kill: C-c reaches the loop through script; the whole tree ends.
	tree := treeOf(pids["ctrl"])
	if len(tree) < 3 {
		t.Fatalf("ctrl's tree: %v", tree)
	}
	r = e.mustRun("kill", "ctrl")
	if strings.Contains(r.stdout, "SIGTERM") || strings.Contains(r.stdout, "SIGKILL") {
		t.Errorf("kill of an adopted window escalated (SIGINT did not reach it through script):\n%s", r)
	}
	row := e.status()["ctrl"]
	if row.State != "STOPPED" {
		t.Errorf("ctrl after kill: %+v exit %s", row, fmtPtr(row.ExitCode))
	}
	for _, pid := range tree {
		if alive(pid) {
			t.Errorf("pid %d of ctrl's tree outlived its kill", pid)
		}
	}
	// run starts launcher's own copy in the adopted window; core is reused.
	e.mustRun("run", "ctrl")
	e.mustRun("run", "done")
	st = e.status()
	if st["ctrl"].State != "READY" || *st["ctrl"].PID == pids["ctrl"] || *st["core"].PID != pids["core"] {
		t.Errorf("after run: %+v", st)
	}
	if n := len(withCmdline("bash", "-ic", loop)); n != 0 {
		t.Errorf("concert's loop still runs (%d)", n)
	}
	e.waitLog("robot", "done", "finished")
	// An adopted process that ignores SIGINT: the stop escalates and ends
	// its whole tree (script put the command in a session of its own).
	stubTree := treeOf(*st["stubborn"].PID)
	if r := e.mustRun("kill", "stubborn"); !strings.Contains(r.stdout, "SIGTERM") {
		t.Errorf("kill stubborn did not escalate:\n%s", r)
	}
	for _, pid := range stubTree {
		if alive(pid) {
			t.Errorf("pid %d of stubborn's tree outlived its kill", pid)
		}
	}
	if n := len(withCmdline("sleep", "301")); n != 0 {
		t.Errorf("stubborn's sleep outlived its kill")
	}
	// restart of an adopted window runs launcher's own copy in it.
	e.mustRun("restart", "core")
	if st := e.status()["core"]; st.State != "READY" || *st.PID == pids["core"] || alive(pids["core"]) {
		t.Errorf("core after restart: %+v (was pid %d)", st, pids["core"])
	}
	coreTree := treeOf(*e.status()["core"].PID)
	e.mustRun("kill", "--all")
	for _, pid := range coreTree {
		if alive(pid) {
			t.Errorf("pid %d of core's tree outlived kill --all", pid)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 16, duplicates: concert_launcher's window lives on in its grouped
// per-process session after `tmux kill-session -t robot` (CONFLICT, not
// STOPPED); once that window is closed by hand its `script` and `bash -ic`
// run on as orphans: launcher shows them (ORPHANED, concert_launcher's),
// run refuses a second copy, kill ends them, and then run starts one.
func TestConcertLeftoversCountAsRunning(t *testing.T) {
	t.Parallel()
	executortest.RequireTool(t, "script")
	loop := `while :; do echo tock; sleep 0.2; done`
	e := newEnv(t, fmt.Sprintf("context: {session: robot}\nctrl: {cmd: %q}\n", loop))
	dir := filepath.Join(e.dir, "concert")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	concertRun(t, e, "robot", dir, [2]string{"ctrl", loop})
	if out, err := e.tmux("kill-session", "-t", "=robot"); err != nil {
		t.Fatalf("kill-session: %v %s", err, out)
	}
	row := e.status()["ctrl"]
	if row.State != "CONFLICT" || row.PID == nil {
		t.Fatalf("ctrl after kill-session of robot: %+v", row)
	}
	if r := e.run("run", "ctrl"); r.code != 1 {
		t.Errorf("run with concert's window in its group: %s", r)
	}
	// Close the window as the old hint said: its command runs on.
	if out, err := e.tmux("kill-session", "-t", "=ctrl"); err != nil {
		t.Fatalf("kill-session ctrl: %v %s", err, out)
	}
	executortest.Eventually(t, "ctrl ORPHANED", func() bool {
		row = e.status()["ctrl"]
		return row.State == "ORPHANED"
	})
	if !strings.Contains(row.Error, "concert_launcher") || len(row.Orphans) < 2 {
		t.Errorf("orphaned row: %+v", row)
	}
	if n := len(withCmdline("bash", "-ic", loop)); n != 1 {
		t.Fatalf("%d copies of the loop before run", n)
	}
	if r := e.run("run", "ctrl"); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "a run of concert_launcher") {
		t.Errorf("run with concert's orphans: %s", r)
	}
	if n := len(withCmdline("bash", "-ic", loop)); n != 1 {
		t.Errorf("%d copies of the loop after a refused run", n)
	}
	r := e.mustRun("kill", "ctrl")
	for _, pid := range row.Orphans {
		if alive(pid) {
			t.Errorf("orphan %d outlived kill: %s", pid, r)
		}
	}
	if got := e.state("ctrl"); got != "STOPPED" {
		t.Errorf("after kill: %s", got)
	}
	e.mustRun("run", "ctrl")
	if got := e.state("ctrl"); got != "READY" {
		t.Errorf("after run: %s", got)
	}
	e.waitLog("robot", "ctrl", "tock")
}
