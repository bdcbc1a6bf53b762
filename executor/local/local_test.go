package local

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
)

// gone reports whether pid has ended (a zombie counts: pid 1 may not reap
// the orphans a killed group leaves).
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func pidOf(t *testing.T, out []byte) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("no pid in %q", out)
	}
	return pid
}

func TestRunGroupReportsOutputAndExitCode(t *testing.T) {
	res, err := Host{}.RunGroup(context.Background(), executor.Command{
		Args: []string{"bash", "-c", `echo "out $V $(pwd)"; echo err >&2; exit 3`},
		Env:  []executor.EnvVar{{Name: "V", Value: "v1"}},
		Dir:  "/",
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || string(res.Stdout) != "out v1 /\n" || string(res.Stderr) != "err\n" {
		t.Errorf("got code %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
}

// What the command leaves in its group ends with it, and does not keep the
// result waiting by holding the output open.
func TestRunGroupEndsWhatTheCommandLeft(t *testing.T) {
	res, err := Host{}.RunGroup(context.Background(), executor.Command{Args: []string{"bash", "-c", `sleep 4711 & echo $!`}}, time.Minute)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("code %d, err %v", res.ExitCode, err)
	}
	pid := pidOf(t, res.Stdout)
	executortest.Eventually(t, "the check's background child ends", func() bool { return gone(pid) })
}

// Out of time, the command and what it started end; the result says so.
// The timeout leaves bash ample time to start its child and say its pid,
// even on a loaded machine.
func TestRunGroupTimesOut(t *testing.T) {
	res, err := Host{}.RunGroup(context.Background(), executor.Command{Args: []string{"bash", "-c", `sleep 4712 & echo $!; wait`}}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 124 || string(res.Stderr) != "timed out" {
		t.Errorf("got code %d, stderr %q; want 124, timed out", res.ExitCode, res.Stderr)
	}
	pid := pidOf(t, res.Stdout)
	executortest.Eventually(t, "the timed-out check's child ends", func() bool { return gone(pid) })
}

// A child that left the group (its own session) and holds the output open
// keeps the result waiting one second at most.
func TestRunGroupDoesNotWaitForAnEscapedChild(t *testing.T) {
	// The child says its pid once it has its own session (setsid done).
	f := t.TempDir() + "/pid"
	res, err := Host{}.RunGroup(context.Background(), executor.Command{Args: []string{"bash", "-c",
		`setsid sh -c 'echo $$ > ` + f + `.tmp && mv ` + f + `.tmp ` + f + `; exec sleep 4713' & while [ ! -s ` + f + ` ]; do sleep 0.01; done; cat ` + f}}, time.Minute)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("code %d, err %v", res.ExitCode, err)
	}
	pid := pidOf(t, res.Stdout)
	if gone(pid) {
		t.Fatalf("the escaped child %d is gone: the test proves nothing", pid)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func TestRunGroupCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pidFile := t.TempDir() + "/pid"
	go func() {
		// Cancelled once the command runs (its pid file is there); polled.
		for end := time.Now().Add(executortest.Patience); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(pidFile); err == nil {
				break
			}
		}
		cancel()
	}()
	_, err := Host{}.RunGroup(ctx, executor.Command{Args: []string{"bash", "-c", `echo $$ > ` + pidFile + `.tmp && mv ` + pidFile + `.tmp ` + pidFile + `; sleep 4714`}}, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	data, _ := os.ReadFile(pidFile)
	pid := pidOf(t, data)
	executortest.Eventually(t, "the cancelled command ends", func() bool { return gone(pid) })
}
