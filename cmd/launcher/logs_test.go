package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// Issue 16, logs that last, against the real binary: the writer rotates
// at log_max_size keeping log_keep files and loses no line; `launcher
// logs` reads across rotations and runs (--runs, --run, -n); and no log
// writer outlives its run.
func TestLogsRotateAndReadAcrossRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: lg, log_max_size: 4KB, log_keep: 2}
chatty: {cmd: 'for i in $(seq 1 30); do echo "$LAUNCHER_TAG line $i"; done; sleep 300'}
big: {cmd: 'for i in $(seq 1 400); do echo "big line $i of forty-odd bytes"; done; echo big done; sleep 300', log_keep: 3}
`)
	logDir := filepath.Join(e.stateDir, "lg")
	writers := func(name string) int {
		return countProcs("logwriter.pl-[0-9a-f]* [0-9a-f]* [0-9]* " + filepath.Join(logDir, name+".log"))
	}

	// Two runs of chatty.
	e.mustRun("run", "chatty")
	// tmux starts the writer (pipe-pane forks a shell that execs it) on
	// its own time: with no ready check, run may return before.
	if !executortest.Poll(func() bool { return writers("chatty") == 1 }) {
		t.Fatalf("%d log writers for a running process (the count below would test nothing)", writers("chatty"))
	}
	// The first run has printed its 30 lines before it is stopped (a stop
	// that came in the middle of its loop, on a loaded machine, cut it
	// short: CI run 45).
	executortest.Eventually(t, "the first run's 30 lines", func() bool {
		return strings.Contains(e.mustRun("logs", "chatty").stdout, " line 30\n")
	})
	e.mustRun("kill", "chatty")
	if !executortest.Poll(func() bool { return writers("chatty") == 0 }) {
		t.Errorf("the log writer of a stopped run is still running (%d)", writers("chatty"))
	}
	e.mustRun("run", "chatty")
	var runs struct {
		Runs []struct {
			Run      string `json:"run"`
			Started  string `json:"started"`
			Ended    string `json:"ended"`
			ExitCode int    `json:"exit_code"`
		} `json:"runs"`
	}
	// chatty has no ready check: run returns before the log writer has
	// written the second run's start line.
	var r result
	if !executortest.Poll(func() bool {
		r = e.mustRun("logs", "chatty", "--runs", "--json")
		return json.Unmarshal([]byte(r.stdout), &runs) == nil && len(runs.Runs) == 2
	}) {
		t.Fatalf("--runs --json:\n%s", r)
	}
	first, second := runs.Runs[0], runs.Runs[1]
	if first.ExitCode != 130 || first.Ended == "" || second.ExitCode != -1 || second.Ended != "" || first.Started > second.Started {
		t.Errorf("runs: %+v", runs.Runs)
	}
	if r := e.mustRun("logs", "chatty", "--runs"); !strings.Contains(r.stdout, first.Run) || !strings.Contains(r.stdout, "130") {
		t.Errorf("--runs table:\n%s", r)
	}
	// Each run's output on its own, and the last lines.
	for _, run := range []string{first.Run, second.Run} {
		if !executortest.Poll(func() bool {
			return strings.Contains(e.mustRun("logs", "chatty", "--run", run).stdout, run+" line 30\n")
		}) {
			t.Fatalf("run %s (first %s) did not write its 30 lines; the log:\n%s\nruns:\n%s", run, first.Run,
				e.mustRun("logs", "chatty").stdout, e.mustRun("logs", "chatty", "--runs").stdout)
		}
		out := e.mustRun("logs", "chatty", "--run", run).stdout
		other := first.Run
		if run == first.Run {
			other = second.Run
		}
		if strings.Count(out, run+" line ") != 30 || strings.Contains(out, other) {
			t.Errorf("--run %s:\n%s", run, out)
		}
	}
	if out := e.mustRun("logs", "chatty", "-n", "2").stdout; strings.Count(out, "\n") != 2 || !strings.HasSuffix(out, second.Run+" line 30\n") {
		t.Errorf("-n 2:\n%s", out)
	}
	if r := e.run("logs", "chatty", "--run", "nosuchrun"); r.code != 1 || !strings.Contains(r.stderr, "--runs chatty") {
		t.Errorf("--run of an unknown run: %s", r)
	}
	if r := e.run("logs", "nosuch"); r.code != 2 {
		t.Errorf("logs of an unknown process: %s", r)
	}
	if r := e.run("logs", "chatty", "-n", "-1"); r.code != 2 {
		t.Errorf("logs -n -1: %s", r)
	}

	// big writes ~18 KB: rotated at 4 KB, three files kept, the newest
	// lines whole and in order.
	e.mustRun("run", "big")
	executortest.Eventually(t, "big's last line", func() bool {
		return strings.Contains(e.mustRun("logs", "big", "-n", "3").stdout, "] big done\n")
	})
	for i := 1; i <= 3; i++ {
		fi, err := os.Stat(fmt.Sprintf("%s/big.log.%d", logDir, i))
		if err != nil {
			t.Fatalf("big.log.%d: %v", i, err)
		}
		if fi.Size() > 4096+100 || fi.Mode().Perm() != 0o600 {
			t.Errorf("big.log.%d: %d bytes, mode %v", i, fi.Size(), fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(logDir + "/big.log.4"); err == nil {
		t.Errorf("a fourth rotated file with log_keep 3")
	}
	var body []string
	for _, l := range strings.Split(strings.TrimSpace(e.mustRun("logs", "big").stdout), "\n") {
		if len(l) < 26 || l[0] != '[' {
			t.Fatalf("a line without its stamp: %q", l)
		}
		if !strings.Contains(l, "[launcher]") {
			body = append(body, l[26:])
		}
	}
	if len(body) < 100 || body[len(body)-1] != "big done" {
		t.Fatalf("logs big: %d lines, last %q", len(body), body[len(body)-1])
	}
	var k int
	fmt.Sscanf(body[0], "big line %d", &k)
	for i, l := range body[:len(body)-1] {
		if want := fmt.Sprintf("big line %d of forty-odd bytes", k+i); l != want {
			t.Fatalf("line %d: %q, want %q", i, l, want)
		}
	}
	if k+len(body)-2 != 400 {
		t.Errorf("the kept lines end at %d", k+len(body)-2)
	}
}

// A ready check that reads this run's output from $LAUNCHER_LOG_START
// keeps working when the log is rotated while the process gets ready
// (the offset pointed past the end of the new, shorter file).
func TestLogStartSurvivesARotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	flag := filepath.Join(e.dir, "flag")
	e.writeConfig(fmt.Sprintf(`
context: {session: ls, log_max_size: 4KB}
node:
  cmd: 'for i in $(seq 1 200); do echo "warm-up line $i of a chatty start"; done; while [ ! -e %s ]; do sleep 0.05; done; echo LISTENING; sleep 300'
  ready_check: 'tail -c "+$LAUNCHER_LOG_START" "$LAUNCHER_LOG" | grep -q LISTENING'
`, flag))
	// Earlier output, so the run starts well into the log.
	if err := os.MkdirAll(filepath.Join(e.stateDir, "ls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.stateDir, "ls", "node.log"), []byte(strings.Repeat("[2026-01-01 00:00:00.000] old\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	b := e.start("run", "node")
	executortest.Eventually(t, "the log was rotated", func() bool {
		_, err := os.Stat(filepath.Join(e.stateDir, "ls", "node.log.1"))
		return err == nil
	})
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, b.stderr())
	}
	if st := e.state("node"); st != "READY" {
		t.Errorf("node is %s", st)
	}
}
