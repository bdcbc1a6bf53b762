package ssh

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
)

// TestResidentShellKeepsCommandsApart: commands run one after another in a
// resident shell each get exactly their own output, error output, exit code
// and input — with or without a final newline, with lines that look like
// an end mark — and leave nothing behind for the next (cd, variables).
func TestResidentShellKeepsCommandsApart(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	w.trust(t, h)
	host, _ := w.transport(t, nil).Host(h.Machine())
	defer host.Close()
	cases := []struct {
		cmd            executor.Command
		stdout, stderr string
		code           int
	}{
		{executor.Command{Args: []string{"printf", "no newline"}}, "no newline", "", 0},
		{executor.Command{Args: []string{"printf", `a\n\n`}}, "a\n\n", "", 0},
		{executor.Command{Args: []string{"true"}}, "", "", 0},
		{executor.Command{Args: []string{"sh", "-c", `echo out; printf err >&2; exit 7`}}, "out\n", "err", 7},
		{executor.Command{Args: []string{"sh", "-c", `printf 'LRES0 0\n\nLRES\n'`}}, "LRES0 0\n\nLRES\n", "", 0},
		{executor.Command{Args: []string{"sh", "-c", `cd /; X=leak; export X; pwd`}}, "/\n", "", 0},
		{executor.Command{Args: []string{"sh", "-c", `pwd; echo "[$X]"`}, Dir: "/tmp"}, "/tmp\n[]\n", "", 0},
		{executor.Command{Args: []string{"cat"}, Stdin: []byte("its own input\x01'\"$(x)`\n")}, "its own input\x01'\"$(x)`\n", "", 0},
		{executor.Command{Args: []string{"cat"}}, "", "", 0}, // stdin is /dev/null, not the request stream
		{executor.Command{Args: []string{"sh", "-c", `kill -TERM $$`}}, "", "", 128 + 15},
	}
	for round := 0; round < 3; round++ {
		for i, c := range cases {
			res, err := host.Run(ctx(t), c.cmd)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			if string(res.Stdout) != c.stdout || string(res.Stderr) != c.stderr || res.ExitCode != c.code {
				t.Errorf("case %d: got %q %q exit %d, want %q %q exit %d", i, res.Stdout, res.Stderr, res.ExitCode, c.stdout, c.stderr, c.code)
			}
		}
	}
	host.mu.Lock()
	idle := len(host.idle)
	host.mu.Unlock()
	if idle < 1 || idle > runSlots {
		t.Errorf("%d resident shells after sequential commands, want 1..%d", idle, runSlots)
	}
}

// TestResidentShellSurvivesCancelAndDeath: a command cancelled mid-way
// costs its resident shell, not the next command; a resident shell killed
// on the machine while idle is replaced, and the command given next runs
// exactly once.
func TestResidentShellSurvivesCancelAndDeath(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	w.trust(t, h)
	host, _ := w.transport(t, nil).Host(h.Machine())
	defer host.Close()
	c, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	_, err := host.Run(c, executor.Command{Args: []string{"sleep", "30"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled command: %v", err)
	}
	res, err := host.Run(ctx(t), executor.Command{Args: []string{"echo", "next"}})
	if err != nil || string(res.Stdout) != "next\n" {
		t.Fatalf("after a cancel: %q %v", res.Stdout, err)
	}
	// Kill every idle resident shell (their parent is sshd's session; each
	// shell's $PPID is what we can name from inside one: ask one for its
	// own pid and kill it from a session of its own).
	res, err = host.Run(ctx(t), executor.Command{Args: []string{"sh", "-c", `echo $PPID`}})
	if err != nil {
		t.Fatal(err)
	}
	shellPID := strings.TrimSpace(string(res.Stdout))
	_, s, err := host.session(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run("kill -KILL " + shellPID); err != nil {
		t.Fatalf("kill the resident shell %s: %v", shellPID, err)
	}
	s.Close()
	deadline := time.Now().Add(executortest.Patience)
	for {
		host.mu.Lock()
		dead := 0
		for _, r := range host.idle {
			if !r.alive() {
				dead++
			}
		}
		host.mu.Unlock()
		if dead > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed resident shell was never seen to end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		res, err = host.Run(ctx(t), executor.Command{Args: []string{"sh", "-c", `f=$HOME/resident-count; [ "$1" = 0 ] && rm -f "$f"; echo x >> "$f"; cat "$f" | wc -l`, "sh", strconv.Itoa(i)}})
		if err != nil {
			t.Fatalf("command %d after the shell died: %v", i, err)
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != string(rune('1'+i)) {
			t.Fatalf("command %d: the file has %q lines, want %d (%q, exit %d)", i, got, i+1, res.Stderr, res.ExitCode)
		}
	}
}
