package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

func TestFlagsAfterArgumentsEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: wrong}\nother: {cmd: 'true'}\n")
	other := filepath.Join(e.dir, "robot.yaml")
	os.WriteFile(other, []byte("context: {session: fa, params: {n: 0}}\ncartesio:\n  cmd: echo n={n} mode={mode}; sleep 300\n  variants:\n    mode:\n      - ec_idle: {params: {mode: idle}}\n      - ec_pos: {params: {mode: pos}}\n"), 0o644)
	e.mustRun("run", "cartesio", "-v", "ec_idle", "-p", "n:=7", "-c", other)
	e.waitLog("fa", "cartesio", "n=7 mode=idle")
	r := e.mustRun("status", "cartesio", "--json", "-c", other)
	if !strings.Contains(r.stdout, `"state": "READY"`) {
		t.Errorf("status: %s", r)
	}
	if r := e.run("status", "--bogus", "-c", other); r.code != 2 || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("unknown flag: %s", r)
	}
	if r := e.run("run", "nosuch", "-c", other); r.code != 2 || !strings.Contains(r.stderr, `unknown process "nosuch"`) {
		t.Errorf("unknown process: %s", r)
	}
	e.mustRun("kill", "cartesio", "-c", other)
}

// TestBrokenConfigsChangeNothing runs every broken config of the corpus:
// exit 2, the error at its file:line, and no tmux server touched.
func TestBrokenConfigsChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: x}\nx: {cmd: 'true'}\n")
	dir, _ := filepath.Abs("../../engine/config/testdata/broken")
	files, _ := filepath.Glob(dir + "/*.yaml")
	if len(files) < 30 {
		t.Fatalf("%d broken configs", len(files))
	}
	want := regexp.MustCompile(`(?m)^# error: (?:(\d+)(?::(\d+))?: )?(.*)$`)
	for _, f := range files {
		data, _ := os.ReadFile(f)
		m := want.FindStringSubmatch(string(data))
		r := e.run("run", "a", "-c", f)
		loc := filepath.Base(f)
		if m[1] != "" {
			loc += ":" + m[1]
		}
		if r.code != 2 || !strings.Contains(r.stderr, loc) || !strings.Contains(r.stderr, m[3]) {
			t.Errorf("%s: want exit 2 with %q and %q, got %s", filepath.Base(f), loc, m[3], r)
		}
	}
	if _, err := os.Stat(e.sock); err == nil {
		t.Error("a tmux server was started by a broken config")
	}
}

func TestCtrlCDuringRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: ci}\nslow: {cmd: sleep 300, ready_check: 'false'}\n")
	b := e.start("run", "slow")
	e.waitState("slow", "STARTING")
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	if code := b.wait(t); code != 130 {
		t.Errorf("exit %d", code)
	}
	if !strings.Contains(b.stderr(), "interrupted") || !strings.Contains(b.stderr(), "keep running") {
		t.Errorf("message: %s", b.stderr())
	}
	if s := e.state("slow"); s != "RUNNING" {
		t.Errorf("after Ctrl-C: %s", s)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: co}\nroscore: {cmd: 'true'}\nplanner: {cmd: 'true'}\n")
	r := e.mustRun("run", "--generate-bash-completion")
	if !strings.Contains(r.stdout, "roscore") || !strings.Contains(r.stdout, "planner") {
		t.Errorf("process names: %s", r)
	}
	r = e.mustRun("completion", "bash")
	if !strings.Contains(r.stdout, "complete -o bashdefault -o default -F _launcher_complete launcher") {
		t.Errorf("script: %s", r)
	}
	if r := e.run("completion", "fish"); r.code != 2 {
		t.Errorf("unsupported shell: %s", r)
	}
}

func TestStatusWatchFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: sw}\na: {cmd: sleep 300}\n")
	e.mustRun("run", "a")
	b := e.start("status", "-w")
	executortest.Eventually(t, "two frames", func() bool { return strings.Count(b.stdout(), "Updated: ") >= 2 })
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	if code := b.wait(t); code != 130 {
		t.Errorf("status -w after Ctrl-C: exit %d, want 130", code)
	}
	if !regexp.MustCompile(`Updated: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\nPROCESS`).MatchString(b.stdout()) {
		t.Errorf("frames:\n%s", b.stdout())
	}
}

func TestQuickstartExample(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: x}\nx: {cmd: 'true'}\n")
	e.cfg, _ = filepath.Abs("../../examples/quickstart/launcher.yaml")
	r := e.mustRun("run", "planner")
	st := e.status()
	for _, p := range []string{"server", "controller", "planner"} {
		if st[p].State != "READY" {
			t.Errorf("%s: %s\n%s", p, st[p].State, r)
		}
	}
	if st["homing"].State != "STOPPED" || !strings.Contains(r.stdout, "[homing] | homed") {
		t.Errorf("homing: %+v", st["homing"])
	}
	e.waitLog("quickstart", "controller", "control loop 2 at 2 Hz")
	// The controller crashes (its loop is killed): its restart policy
	// starts it again in the same pane.
	pane := e.pid("controller")
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pane, pane))
	if err != nil || len(strings.Fields(string(kids))) == 0 {
		t.Fatalf("children of the pane %d: %q %v", pane, kids, err)
	}
	child, _ := strconv.Atoi(strings.Fields(string(kids))[0])
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := restartedRow(e, "controller", 1); *st.LastRestartExit != 137 || *st.PID != pane {
		t.Errorf("controller after its crash: %+v", st)
	}
	e.mustRun("kill", "--all")
}

// Issue 12, finding 3: a Ctrl-C in the middle of a bring-up leaves no
// window half made. Spawns in flight finish (each window gets its env
// file: none ends DEAD with "cannot read …/run/….env", exit 126); what
// started keeps running and the rest is not started.
func TestCtrlCMidBringUpLeavesNoHalfMadeWindow(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("context: {session: half}\n")
	var names []string
	for i := 0; i < 80; i++ {
		fmt.Fprintf(&b, "p%02d: {cmd: sleep 300}\n", i)
		names = append(names, fmt.Sprintf("p%02d", i))
	}
	fmt.Fprintf(&b, "all:\n  cmd: \"true\"\n  persistent: false\n  depends: [%s]\n", strings.Join(names, ", "))
	e := newEnv(t, b.String())
	run := e.start("run", "all")
	executortest.Eventually(t, "the first windows exist", func() bool {
		out, err := e.tmux("list-windows", "-t", "=half:", "-F", "#{window_name}")
		return err == nil && strings.Count(out, "\n") >= 3
	})
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	if code := run.wait(t); code != 130 {
		t.Fatalf("run after Ctrl-C: exit %d\n%s", code, run.stderr())
	}
	if !regexp.MustCompile(`running \(\d+\): p\d\d`).MatchString(run.stderr()) || !strings.Contains(run.stderr(), "not started (") {
		t.Errorf("Ctrl-C does not say what runs and what was not started:\n%s", run.stderr())
	}
	var st map[string]statusRow
	executortest.Eventually(t, "no process is still starting", func() bool {
		st = e.status()
		for _, row := range st {
			if row.State == "STARTING" {
				return false
			}
		}
		return true
	})
	running := 0
	for _, n := range names {
		switch row := st[n]; row.State {
		case "RUNNING", "READY":
			running++
		case "STOPPED":
		default:
			t.Errorf("%s is %s (exit %s) after Ctrl-C; log:\n%s", n, row.State, fmtPtr(row.ExitCode), e.logOf("half", n))
		}
	}
	if running == 0 {
		t.Errorf("nothing kept running after Ctrl-C: %v", st)
	}
}

// Issue 12, finding 4: a ready check that leaves a child in the background
// left one per try; each try's children end with it.
func TestReadyCheckChildrenEndWithEachTry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	flag, tries := filepath.Join(e.dir, "flag"), filepath.Join(e.dir, "tries")
	e.writeConfig(fmt.Sprintf(`
context: {session: rcc}
a:
  cmd: sleep 300
  ready_check: "echo try >> %s; sleep 4244 & test -e %s"
`, tries, flag))
	b := e.start("run", "a")
	executortest.Eventually(t, "the check ran three times", func() bool {
		data, _ := os.ReadFile(tries)
		return strings.Count(string(data), "try") >= 3
	})
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t); code != 0 {
		t.Fatalf("run: %d\n%s", code, b.stderr())
	}
	if n := countProcs("sleep 4244"); n != 0 {
		t.Errorf("%d children of the ready check still run", n)
		_ = exec.Command("pkill", "-f", "sleep 4244").Run()
	}
}

// countProcs counts processes whose command line contains s.
func countProcs(s string) int {
	out, _ := exec.Command("pgrep", "-c", "-f", s).Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
