package tmux

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// TestRestartDecision runs the pane's restart decision (__lr_decide in
// prologue.bash, a function of its inputs only) as a table: one row per
// rule of the restart policy.
func TestRestartDecision(t *testing.T) {
	executortest.RequireTool(t, "bash")
	begin, end := strings.Index(prologue, "# decide:begin"), strings.Index(prologue, "# decide:end")
	if begin < 0 || end < begin {
		t.Fatal("prologue.bash has no decide:begin/end markers")
	}
	decide := prologue[begin:end]
	const now = 1_000_000
	rows := []struct {
		name  string
		mode  string
		rc    int
		times []int // earlier restarts, ms
		delay int
		cap   int
		max   int
		win   int
		want  string // verdict, delay (ms), restarts kept in the window
	}{
		{"always restarts after a clean exit", "always", 0, nil, 1000, 30000, 5, 60000, "restart 1000 0"},
		{"on-failure: exit 0 ends", "on-failure", 0, nil, 1000, 30000, 5, 60000, "exit"},
		{"on-failure: SIGINT (130) ends", "on-failure", 130, nil, 1000, 30000, 5, 60000, "exit"},
		{"on-failure: SIGTERM (143) ends", "on-failure", 143, nil, 1000, 30000, 5, 60000, "exit"},
		{"on-failure: exit 1 restarts", "on-failure", 1, nil, 1000, 30000, 5, 60000, "restart 1000 0"},
		{"each restart in the window doubles the delay", "always", 1, []int{now - 3000, now - 2000}, 1000, 30000, 5, 60000, "restart 4000 2"},
		{"restarts outside the window are forgotten", "always", 1, []int{now - 120000, now - 90000, now - 1000}, 1000, 30000, 5, 60000, "restart 2000 1"},
		{"the delay stops at its cap", "always", 1, []int{now - 5, now - 4, now - 3, now - 2, now - 1}, 1000, 3000, 0, 60000, "restart 3000 5"},
		{"max_restarts within the window: give up", "always", 2, []int{now - 3, now - 2, now - 1}, 1000, 30000, 3, 60000, "giveup"},
		{"max_restarts 0 never gives up (the 100ms floor still doubles)", "always", 2, []int{now - 3, now - 2, now - 1}, 100, 30000, 0, 60000, "restart 800 3"},
	}
	for _, r := range rows {
		times := make([]string, len(r.times))
		for i, x := range r.times {
			times[i] = fmt.Sprint(x)
		}
		script := decide + fmt.Sprintf(`
__lr_mode=%s __launcher_rc=%d __lr_t=%d __lr_delay=%d __lr_cap=%d __lr_max=%d __lr_window=%d
__lr_times=(%s)
__lr_decide
if [ "$__lr_verdict" = restart ]; then echo "$__lr_verdict $__lr_d ${#__lr_times[@]}"; else echo "$__lr_verdict"; fi
`, r.mode, r.rc, now, r.delay, r.cap, r.max, r.win, strings.Join(times, " "))
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != r.want {
			t.Errorf("%s: got %q (%v), want %q", r.name, got, err, r.want)
		}
	}
}

// TestPaneDrainEndsOnCtrlC: a C-c while the pane waits for its log writer
// (its command has ended) ends the wait, reaps the wait's sleep, and the
// pane keeps the command's exit code (it was 130, as if C-c had ended the
// command). Here no writer answers, so only the C-c ends the wait.
func TestPaneDrainEndsOnCtrlC(t *testing.T) {
	executortest.RequireTool(t, "bash", "perl")
	dir := t.TempDir()
	script, env := filepath.Join(dir, "prologue.bash"), filepath.Join(dir, "run.env")
	tag := fmt.Sprintf("drain%d", os.Getpid())
	if err := os.WriteFile(script, []byte(prologue), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte("export LAUNCHER_CMD='exit 3' LAUNCHER_PROCESS=p LAUNCHER_TAG="+tag+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// SIGINT as in a pane: not ignored (a shell cannot trap a signal it
	// was started with ignored, as a background job of a script is).
	cmd := exec.Command("perl", "-e", `$SIG{INT} = "DEFAULT"; exec @ARGV`, "bash", "-c", `. "$1" "$2"`, "bash", script, env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "[launcher] p exited with code 3") {
			break
		}
	}
	// The C-c comes once the wait's sleep runs, so that the test sees it
	// cut short and reaped (not a C-c before the sleep began).
	executortest.Eventually(t, "the drain's sleep runs", func() bool { return len(withTag(tag, "sleep")) > 0 })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("the pane ended with %v; want the command's exit code 3", err)
	}
	// The wait's sleep carries the run's variables: none outlives the pane.
	if left := withTag(tag, ""); len(left) > 0 {
		t.Errorf("processes %v have the run's variables after the pane ended", left)
	}
}

// withTag lists the pids of the live processes (named comm, when not
// empty) whose environment has LAUNCHER_TAG=tag.
func withTag(tag, comm string) []string {
	var pids []string
	files, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range files {
		dir := filepath.Dir(f)
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), "LAUNCHER_TAG="+tag+"\x00") {
			continue
		}
		if st, err := os.ReadFile(dir + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			continue // gone, or a zombie
		}
		if c, _ := os.ReadFile(dir + "/comm"); comm == "" || strings.TrimSpace(string(c)) == comm {
			pids = append(pids, filepath.Base(dir))
		}
	}
	return pids
}
