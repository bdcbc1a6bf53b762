package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// launcherBin is the launcher binary the integration tests drive.
var launcherBin string

func TestMain(m *testing.M) {
	startsHelpers = false // this binary is not launcher
	dir, err := os.MkdirTemp("", "launcher-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	launcherBin = filepath.Join(dir, "launcher")
	// Built as `make build` builds it (TAGS in the Makefile).
	out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", launcherBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building launcher: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tenv is one integration test's world: its own tmux server (socket,
// -f /dev/null), HOME, state directory and config.
type tenv struct {
	t        testing.TB
	dir      string
	sock     string
	home     string
	stateDir string
	cfg      string
	extra    []string
}

// newEnv starts a test world with config as launcher.yaml. The tmux server
// is the test's own and is killed at the end.
func newEnv(t testing.TB, config string) *tenv {
	t.Helper()
	executortest.RequireTool(t, "tmux", "bash", "perl")
	// Unix socket paths are short: keep the directory near the root.
	dir, err := os.MkdirTemp("", "lt")
	if err != nil {
		t.Fatal(err)
	}
	e := &tenv{t: t, dir: dir, sock: filepath.Join(dir, "tmux.sock"), home: filepath.Join(dir, "home"),
		stateDir: filepath.Join(dir, "state"), cfg: filepath.Join(dir, "launcher.yaml")}
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(config)
	t.Cleanup(func() {
		_ = exec.Command("tmux", "-S", e.sock, "kill-server").Run()
		os.RemoveAll(dir)
	})
	return e
}

func (e *tenv) writeConfig(config string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfg, []byte(config), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *tenv) environ() []string {
	env := []string{
		"HOME=" + e.home,
		"PATH=" + os.Getenv("PATH"),
		"LAUNCHER_STATE_DIR=" + e.stateDir,
		"LAUNCHER_TMUX_SOCKET=" + e.sock,
		"LAUNCHER_TMUX_CONFIG=/dev/null",
		"LAUNCHER_CONFIG=" + e.cfg,
		"TERM=dumb",
		"LANG=C.UTF-8",
	}
	return append(env, e.extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs the launcher to completion (bounded by Patience: only a hang
// reaches it).
func (e *tenv) run(args ...string) result {
	e.t.Helper()
	return e.runWithin(executortest.Patience, args...)
}

// runWithin is run with a bound of its own, for a run whose work grows
// with the test (a thousand processes under load take minutes).
func (e *tenv) runWithin(patience time.Duration, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	cmd := exec.CommandContext(ctx, launcherBin, args...)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("launcher %v: %v", args, err)
	}
	return r
}

// mustRun runs the launcher and fails the test unless it exits 0.
func (e *tenv) mustRun(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("launcher %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// bg is a launcher running in the background.
type bg struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	errb bytes.Buffer
	done chan struct{}
	code int
}

func (b *bg) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

func (b *bg) stdout() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

type errWriter struct{ b *bg }

func (w errWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.errb.Write(p)
}

func (b *bg) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errb.String()
}

// start runs the launcher in the background; it is killed at cleanup.
func (e *tenv) start(args ...string) *bg {
	e.t.Helper()
	b := &bg{done: make(chan struct{})}
	b.cmd = exec.Command(launcherBin, args...)
	b.cmd.Env = e.environ()
	b.cmd.Dir = e.dir
	b.cmd.Stdout, b.cmd.Stderr = b, errWriter{b}
	if err := b.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		err := b.cmd.Wait()
		b.code = 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			b.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				b.code = 128 + int(ws.Signal())
			}
		}
		close(b.done)
	}()
	e.t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

// wait waits for a background launcher to exit and returns its code.
func (b *bg) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-b.done:
		return b.code
	case <-time.After(executortest.Patience):
		t.Fatalf("launcher still running after %s; output:\n%s\n%s", executortest.Patience, b.stdout(), b.stderr())
		return -1
	}
}

// statusRow is one row of `status --json`.
type statusRow struct {
	Process  string `json:"process"`
	Session  string `json:"session"`
	Machine  string `json:"machine"`
	State    string `json:"state"`
	PID      *int   `json:"pid"`
	ExitCode *int   `json:"exit_code"`
	Error    string `json:"error"`
	Restarts int    `json:"restarts"`
	// LastRestartExit is the exit code behind the last restart.
	LastRestartExit *int  `json:"last_restart_exit_code"`
	Orphans         []int `json:"orphans"`
	// Started and AgeMs: the run's start (its machine's clock) and age.
	Started time.Time `json:"started"`
	AgeMs   *int64    `json:"age_ms"`
}

func (e *tenv) status() map[string]statusRow {
	e.t.Helper()
	r := e.mustRun("status", "--json")
	var doc struct {
		Processes []statusRow `json:"processes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	out := map[string]statusRow{}
	for _, p := range doc.Processes {
		out[p.Process] = p
	}
	return out
}

func (e *tenv) state(proc string) string { return e.status()[proc].State }

// waitState polls until proc is in state.
func (e *tenv) waitState(proc, state string) statusRow {
	e.t.Helper()
	var last statusRow
	if !executortest.Poll(func() bool {
		last = e.status()[proc]
		return last.State == state
	}) {
		e.t.Fatalf("%s is not %s after %s: %+v", proc, state, executortest.Patience, last)
	}
	return last
}

// tmux runs tmux against the test's server.
func (e *tenv) tmux(args ...string) (string, error) {
	cmd := exec.Command("tmux", append([]string{"-S", e.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ctrlC types C-c in a window, as an operator attached to it does.
func (e *tenv) ctrlC(target string) {
	e.t.Helper()
	if out, err := e.tmux("send-keys", "-t", target, "C-c"); err != nil {
		e.t.Fatalf("send-keys -t %s C-c: %v %s", target, err, out)
	}
}

// logOf returns the log of a process.
func (e *tenv) logOf(session, proc string) string {
	data, _ := os.ReadFile(filepath.Join(e.stateDir, session, proc+".log"))
	return string(data)
}

// waitLog waits until the log of proc holds want (the log writer runs
// asynchronously to the pane) and returns it.
func (e *tenv) waitLog(session, proc, want string) string {
	e.t.Helper()
	var log string
	if !executortest.Poll(func() bool {
		log = e.logOf(session, proc)
		return strings.Contains(log, want)
	}) {
		e.t.Fatalf("log of %s does not contain %q after 10s:\n%s", proc, want, log)
	}
	return log
}

// pid returns the pid of a running process (fails if it has none).
func (e *tenv) pid(proc string) int {
	e.t.Helper()
	st := e.status()[proc]
	if st.PID == nil {
		e.t.Fatalf("%s has no pid: %+v", proc, st)
	}
	return *st.PID
}

// alive reports whether pid runs. A zombie does not: on some machines pid 1
// (a VM's init, a container's entry point) reaps orphans late or never.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // not Linux /proc: the signal test is all there is
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) == 0 || f[0] != "Z"
}

// runAll runs the launcher n times at once with the same arguments and
// fails the test for every run that does not exit 0.
func (e *tenv) runAll(n int, args ...string) {
	e.t.Helper()
	var wg sync.WaitGroup
	res := make([]result, n)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = e.run(args...)
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.code != 0 {
			e.t.Errorf("%v #%d: %s", args, i, r)
		}
	}
}

// panes returns what every pane of a session shows now.
func (e *tenv) panes(session string) string {
	out, _ := e.tmux("list-panes", "-s", "-t", "="+session+":", "-F", "#{pane_id}")
	var all strings.Builder
	for _, p := range strings.Fields(out) {
		c, _ := e.tmux("capture-pane", "-p", "-t", p)
		all.WriteString(c)
	}
	return all.String()
}

// fmtPtr shows an optional number ("-" when absent).
func fmtPtr(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}
