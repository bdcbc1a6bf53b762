package tmux

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/local"
)

// newLocal returns a Machine on a private tmux server (own socket,
// -f /dev/null) with a clean HOME, killed at the end of the test.
func newLocal(t *testing.T) *Machine {
	t.Helper()
	executortest.RequireTool(t, "tmux", "bash", "perl")
	dir, err := os.MkdirTemp("", "ltm")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// The tmux server inherits this environment: no user .bashrc.
	t.Setenv("HOME", home)
	sock := filepath.Join(dir, "s")
	m, err := New(context.Background(), local.Host{}, Options{Socket: sock, Config: "/dev/null", StateDir: filepath.Join(dir, "state"), Home: home})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("tmux", "-S", sock, "kill-server").Run()
		os.RemoveAll(dir)
	})
	return m
}

func TestConformanceLocal(t *testing.T) {
	executortest.Suite(t, executortest.Target{Machine: newLocal(t), Session: "conf"})
}

func TestParseWindows(t *testing.T) {
	row := func(f ...string) string {
		name, restarts, state := "", "", ""
		switch f[3] {
		case "web":
			name = "web-proc" // the @launcher_name mark
			restarts, state = "3 1 1700000001000", "backoff 1700000002000 7"
		case "dead":
			restarts, state = "5 2 1700000001000", "gaveup exited with code 2 after 5 restarts"
		}
		group, concertMark, concertCmd := "", "", "0"
		if f[3] == "sig" {
			// A window concert_launcher started, in a grouped session.
			group, concertCmd = "robot", "1"
		}
		request := ""
		if f[3] == "web" {
			request = `{"v":["sim"]}`
		}
		return strings.Join(append(f, "4242", name, restarts, state, group, concertMark, concertCmd, request, "end"), sep)
	}
	out := strings.Join([]string{
		row("s", "@1", "0", "web", "100", "0", "", "", "1", "", "abc", "1", "1700000000000", "tag", "", "/l/web.log", "0"),
		row("s", "@2", "1", "dead", "101", "1", "3", "", "1", "stopping h 1 2 3", "", "0", "", "", "", "", "1"),
		row("s", "@3", "2", "sig", "102", "1", "", "9", "", "", "", "", "", "", "", "", ""),
		"garbage line",
		row("s", "@4", "x", "badindex", "1", "0", "", "", "", "", "", "", "", "", "", "", ""),
	}, "\n")
	ws := ParseWindows([]byte(out))
	if len(ws) != 3 {
		t.Fatalf("parsed %d windows: %+v", len(ws), ws)
	}
	if w := ws[0]; w.Name != "web" || w.Dead || !w.Marks.Managed || !w.Marks.Ready || w.Marks.Started != 1700000000000 || w.Marks.Log != "/l/web.log" || w.Marks.Name != "web-proc" || !w.Holds("web-proc") || w.Holds("web") || w.Marks.Request != `{"v":["sim"]}` {
		t.Errorf("live window: %+v", w)
	}
	if r := ws[0].Marks.Restarts; r.Count != 3 || r.LastExit != 1 || r.Last != 1700000001000 || r.BackoffUntil != 1700000002000 || r.BackoffExit != 7 || r.GaveUp != "" {
		t.Errorf("restart marks: %+v", r)
	}
	if r := ws[1].Marks.Restarts; r.Count != 5 || r.GaveUp != "exited with code 2 after 5 restarts" || r.BackoffUntil != 0 {
		t.Errorf("gave-up marks: %+v", r)
	}
	if w := ws[1]; !w.Dead || !w.ExitKnown || w.ExitCode != 3 || w.Marks.Op != "stopping h 1 2 3" || !w.Marks.OneShot {
		t.Errorf("dead window: %+v", w)
	}
	if w := ws[2]; !w.ExitKnown || w.ExitCode != 137 || w.Marks.Managed || w.Group != "robot" || w.Foreign != executor.ConcertLauncher {
		t.Errorf("killed window: %+v", w)
	}
	if w := ws[0]; w.Group != "" || w.Foreign != "" {
		t.Errorf("launcher's window: %+v", w)
	}
	// A window of a session grouped with the one asked for is found once.
	other := ws[2]
	other.Session = "robot"
	snap := executor.Snapshot{Windows: []executor.Window{ws[2], other}}
	if got := snap.Find("robot", "sig"); len(got) != 1 || got[0].Session != "robot" {
		t.Errorf("Find in a group: %+v", got)
	}
	if got := snap.Find("s", "sig"); len(got) != 1 {
		t.Errorf("Find in its own session: %+v", got)
	}
}

func TestParsePS(t *testing.T) {
	ps := ParsePS([]byte("    1     0  1234  0.5 /sbin/init splash\n  200     1     0  0.0 [kthreadd]\nbad\n"))
	if len(ps) != 2 || ps[0].PID != 1 || ps[0].RSSKiB != 1234 || ps[0].CPU != 0.5 || ps[0].Args != "/sbin/init splash" {
		t.Errorf("%+v", ps)
	}
}

func TestEscapeFormat(t *testing.T) {
	if got := escapeFormat("date +%Y #{x} ##"); got != "date +%%Y ##{x} ####" {
		t.Errorf("%q", got)
	}
}

// TestLogWritersAgree feeds the same terminal stream to the Perl and the
// bash writer: they must produce the same lines (timestamps aside).
func TestLogWritersAgree(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	input := "plain\r\n\x1b[31mred\x1b[0m text\r\nprogress 10%\rprogress 100%\r\n\x1b]0;title\x07after osc\r\ntab\there\r\nctl\x01chars\x7f\r\nünïcödé\r\nno newline at end"
	run := func(args ...string) []string {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if len(l) < 26 || l[0] != '[' || l[24] != ']' {
				t.Fatalf("%v: line without timestamp: %q", args[0], l)
			}
			lines = append(lines, l[26:])
		}
		return lines
	}
	perl := run("perl", "-e", perlWriter)
	bash := run("bash", "-c", bashWriter)
	want := []string{"plain", "red text", "progress 100%", "after osc", "tab\there", "ctlchars", "ünïcödé", "no newline at end"}
	if strings.Join(perl, "|") != strings.Join(want, "|") {
		t.Errorf("perl writer: %q", perl)
	}
	if strings.Join(bash, "|") != strings.Join(want, "|") {
		t.Errorf("bash writer: %q", bash)
	}
}

func TestBatchingSharesInvocations(t *testing.T) {
	m := newLocal(t)
	ctx := context.Background()
	// Concurrent mark updates are served by fewer tmux invocations than
	// requests.
	w, err := m.Spawn(ctx, executor.SpawnSpec{Session: "b", Name: "w", Script: "sleep 300", Marks: executor.Marks{Tag: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	counter := &countingHost{Host: m.Host}
	m.Host = counter
	done := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func() { done <- m.SetMarks(ctx, w.ID, executor.SetReady(true)) }()
	}
	for i := 0; i < 40; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := counter.n.Load(); n >= 40 || n < 1 {
		t.Errorf("40 concurrent requests took %d tmux invocations", n)
	}
	_ = m.Signal(ctx, w, executor.SIGKILL, executor.MarkUpdate{})
}

func TestConformanceLocalDocker(t *testing.T) {
	d := executortest.StartDockerd(t)
	t.Setenv("DOCKER_HOST", d.Host())
	d.Run(t, "conf-local")
	executortest.Suite(t, executortest.Target{Machine: newLocal(t), Container: "conf-local", Session: "dock"})
}

// TestBashWriterLongLines: the bash writer is linear in a line's length
// (it used to take 22 s for one 64 KB line and never end for 1 MB) and
// still agrees with the Perl writer.
func TestBashWriterLongLines(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	inputs := map[string]string{
		"64 KB plain":           strings.Repeat("x", 64<<10),
		"1 MB plain":            strings.Repeat("y", 1<<20),
		"64 KB coloured":        strings.Repeat("\x1b[31mred\x1b[0m plain ", 4000),
		"300 KB escapes+ctl":    strings.Repeat("\x1b[1;32mok\x1b[0m\x01 z ", 20000),
		"200 KB control chars":  strings.Repeat("c\x01\x02 ", 50000),
		"progress bar rewrites": strings.Repeat("10%\r", 20000) + "100%",
	}
	for name, in := range inputs {
		run := func(args ...string) string {
			// The bound only ends a regression; the assertion is equality.
			ctx, cancel := context.WithTimeout(context.Background(), executortest.Patience)
			defer cancel()
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Stdin = strings.NewReader(in + "\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v: %v", name, args[0], err)
			}
			if len(out) < 27 {
				t.Fatalf("%s: %v: short output %q", name, args[0], out)
			}
			return string(out[26:])
		}
		perl, bash := run("perl", "-e", perlWriter), run("bash", "-c", bashWriter)
		if perl != bash {
			t.Errorf("%s: writers disagree (perl %d bytes, bash %d bytes)", name, len(perl), len(bash))
		}
	}
}

// TestLogWritersRecoverFromFullDisk: after ENOSPC a writer keeps going
// once space is freed, and records how many lines were lost (both used to
// stop writing for good).
func TestLogWritersRecoverFromFullDisk(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash", "mount")
	if os.Getuid() != 0 {
		executortest.Skip(t, "needs root to mount a small tmpfs")
	}
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := smallTmpfs(t, "64k")
			logPath := filepath.Join(dir, "p.log")
			f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			// Fill the disk before the writer starts.
			fillDisk(t, dir)
			flag := "-e"
			if w.prog == "bash" {
				flag = "-c"
			}
			cmd := exec.Command(w.prog, flag, w.script)
			cmd.Stdout = f
			in, _ := cmd.StdinPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			for i := 0; i < 5; i++ {
				fmt.Fprintf(in, "lost line %d\n", i)
			}
			// The writer has tried to write (and failed: the disk is full)
			// once the kernel counted a write system call of it.
			executortest.Eventually(t, "the writer tries to write", func() bool {
				data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", cmd.Process.Pid))
				return err == nil && !strings.Contains(string(data), "syscw: 0\n")
			})
			if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(in, "after the disk was freed\n")
			in.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("writer: %v", err)
			}
			data, _ := os.ReadFile(logPath)
			log := string(data)
			if !strings.Contains(log, "] after the disk was freed") {
				t.Errorf("nothing written after space was freed:\n%s", log)
			}
			if !regexp.MustCompile(`\[launcher\] \d+ line(s|\(s\))? of output lost`).MatchString(log) {
				t.Errorf("no record of the lost lines:\n%s", log)
			}
		})
	}
}

// smallTmpfs mounts a tmpfs of size (root only; skipped, with a reason,
// where it cannot be mounted) on a temporary folder, unmounted at the end.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		executortest.Skip(t, "cannot mount a tmpfs: "+string(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// fillDisk fills dir's file system with dir/filler, 4 KiB at a time,
// until a write fails.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	zeros := make([]byte, 4096)
	for {
		if _, err := filler.Write(zeros); err != nil {
			return
		}
	}
}

// logWriters are the two log writers, run as tmux's pipe-pane runs them.
var logWriters = []struct{ name, prog, script string }{{"perl", "perl", perlWriter}, {"bash", "bash", bashWriter}}

// startWriter runs a writer with args (TAG PANE LOG [MAX KEEP]) appending
// to log, as the pipe command does; the pane's output is written to in.
func startWriter(t *testing.T, prog, script, log string, args ...string) (in io.WriteCloser, cmd *exec.Cmd) {
	t.Helper()
	out, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	argv := append([]string{"-e", script}, args...)
	if prog == "bash" {
		argv = append([]string{"-c", script, "bash"}, args...) // $0 first
	}
	cmd = exec.Command(prog, argv...)
	cmd.Stdout = out
	if in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return in, cmd
}

// TestLogWritersRemoveTheEnvFile: the run's env file (emptied by the
// prologue once read) is removed by the pane's log writer when the run's
// own start line comes, so the pane forks no rm: not on another run's
// start line, not on output that only mentions it.
func TestLogWritersRemoveTheEnvFile(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			log, env := filepath.Join(dir, "p.log"), filepath.Join(dir, "tag1-0123abcd.env")
			if err := os.WriteFile(env, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			in, cmd := startWriter(t, w.prog, w.script, log, "tag1", "0", log, "0", "0", env)
			defer cmd.Wait()
			defer in.Close()
			exists := func() bool { _, err := os.Stat(env); return err == nil }
			for _, l := range []string{"from .bashrc", "[launcher] starting node (run tag2)", "[launcher] starting node (run tag1) and more",
				"[launcher] starting two words (run tag1)"} {
				fmt.Fprintln(in, l)
			}
			fmt.Fprintln(in, "marker")
			if !executortest.Poll(func() bool { return strings.Contains(readFile(log), "marker") }) {
				t.Fatalf("the writer did not write:\n%s", readFile(log))
			}
			if !exists() {
				t.Fatal("the env file was removed before the run's start line")
			}
			fmt.Fprintln(in, "[launcher] starting node (run tag1)")
			if !executortest.Poll(func() bool { return !exists() }) {
				t.Fatal("the env file is still there after the run's start line")
			}
			if !strings.Contains(readFile(log), "] [launcher] starting node (run tag1)\n") {
				t.Errorf("the start line is not in the log:\n%s", readFile(log))
			}
		})
	}
}

// TestLogWritersRepeatTheEndSignal: after the run's exit line the writer
// tells the pane (SIGUSR1) that its log has every byte, and tells it again
// every 0.2 s while the pane lives: a pane whose USR1 came between its
// last look at the flag and its `wait` would otherwise wait its full 2 s
// (the pane's drain waits on one sleep now, not a loop of short ones).
// The writer ends with the pane.
func TestLogWritersRepeatTheEndSignal(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			log, got := filepath.Join(dir, "p.log"), filepath.Join(dir, "usr1")
			// The pane: counts the USR1s it gets, one line each.
			pane := exec.Command("perl", "-e", `$SIG{USR1} = sub { open(my $f, '>>', $ARGV[0]); print $f "usr1\n"; close $f }; open(my $f, '>>', $ARGV[0]); print $f "ready\n"; close $f; sleep 1 while 1`, got)
			if err := pane.Start(); err != nil {
				t.Fatal(err)
			}
			defer pane.Process.Kill()
			// Until its handler is set, a USR1 would end it.
			executortest.Eventually(t, "the pane catches USR1", func() bool { return strings.HasPrefix(readFile(got), "ready\n") })
			signals := func() int { return strings.Count(readFile(got), "usr1\n") }
			in, cmd := startWriter(t, w.prog, w.script, log, "tag1", strconv.Itoa(pane.Process.Pid), log)
			defer in.Close()
			fmt.Fprintln(in, "[launcher] node exited with code 0 (run tag1)")
			if !executortest.Poll(func() bool { return signals() >= 2 }) {
				t.Fatalf("the pane got %d USR1 after the exit line; want it again while the pane lives", signals())
			}
			if strings.Count(readFile(log), "] [launcher] node exited with code 0 (run tag1)\n") != 1 {
				t.Errorf("the exit line is not in the log once:\n%s", readFile(log))
			}
			pane.Process.Kill()
			pane.Wait() // reaped, as tmux reaps a pane's process
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(executortest.Patience):
				t.Fatal("the writer did not end with its pane")
			}
		})
	}
}

// A pane's pid is the writer's to signal only while it is that pane: a
// process the kernel has given the pid to since (the pane ended while the
// writer lagged) gets no USR1, whose default action would end it. In a pid
// namespace of its own, the test hands the pane's pid to a new process
// (ns_last_pid) before the writer reads the exit line.
func TestLogWritersSignalOnlyTheirPane(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash", "unshare")
	if out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		executortest.Skip(t, "cannot make a pid namespace (needs root): "+strings.TrimSpace(string(out)))
	}
	// The driver runs as pid 1 of the namespace. starttime prints field 22
	// of /proc/PID/stat (the process's start, in clock ticks).
	const driver = `set -u
prog=$1 script=$2 dir=$3
starttime() { local s; read -r s < /proc/$1/stat || return 1; s=${s##*) }; local -a f=($s); echo "${f[19]}"; }
state() { local s; { read -r s < /proc/$1/stat; } 2>/dev/null || { echo gone; return; }; s=${s##*) }; echo "${s%% *}"; }
sleep 1000 & a=$!
mkfifo "$dir/in"
"$prog" "$script" tag1 "$a" "$dir/p.log" < "$dir/in" >> "$dir/p.log" & wp=$!
exec 3> "$dir/in"
echo hello >&3
until grep -q hello "$dir/p.log"; do sleep 0.01; done
t=$(starttime "$a")
kill "$a"; wait "$a"
# A pid given away within the clock tick the pane started in would look
# the same: the new process starts two ticks later.
until (( $(starttime self) > t + 1 )); do sleep 0.01; done
echo $((a - 1)) > /proc/sys/kernel/ns_last_pid
sleep 1000 & b=$!
[[ $b == "$a" ]] || { echo "the pane's pid $a was not given again (got $b)"; exit 3; }
echo "[launcher] node exited with code 0 (run tag1)" >&3
check() { local s; s=$(state "$b"); [[ $s != Z && $s != gone ]] || { echo "the process that has the pane's pid was signalled: $s"; exit 4; }; }
while kill -0 "$wp" 2>/dev/null; do check; sleep 0.01; done
check
grep -q "exited with code 0 (run tag1)" "$dir/p.log" || { echo "no exit line in the log"; exit 5; }
echo ok`
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "writer")
			if err := os.WriteFile(script, []byte(w.script), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), executortest.Patience)
			defer cancel()
			out, err := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", driver, "driver", w.prog, script, dir).CombinedOutput()
			if err != nil || !strings.HasSuffix(string(out), "ok\n") {
				t.Fatalf("%v\n%s\nlog:\n%s", err, out, readFile(filepath.Join(dir, "p.log")))
			}
		})
	}
}

// TestLogWritersRecreateARemovedLog: a log folder removed while the
// process runs (a cleanup script, an operator's rm -rf) is created again by
// the writer, which says so in it, and the lines after it are kept
// (issue 12, finding 4: they went to the removed file, lost).
func TestLogWritersRecreateARemovedLog(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "logs", "robot")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(dir, "a.log")
			in, cmd := startWriter(t, w.prog, w.script, log, "", "0", log)
			defer func() { in.Close(); _ = cmd.Wait() }()
			read := func() string { b, _ := os.ReadFile(log); return string(b) }
			fmt.Fprintln(in, "before")
			executortest.Eventually(t, "the first line", func() bool { return strings.Contains(read(), "before") })
			if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
				t.Fatal(err)
			}
			// A line per poll until the writer has seen the removal (it
			// checks once a second), then one more that must reach the new
			// log. (Waiting for each poll's own line made the slower bash
			// writer chase a backlog: 2-14 s.)
			n := 0
			executortest.Eventually(t, "the log is created again", func() bool {
				n++
				fmt.Fprintf(in, "after %d\n", n)
				return strings.Contains(read(), "[launcher] the log file was removed")
			})
			fmt.Fprintln(in, "the last line")
			executortest.Eventually(t, "the lines after it", func() bool { return strings.Contains(read(), "] the last line\n") })
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("folder made again: %v %v", fi, err)
			}
		})
	}
}

// Issue 16, logs that last: both writers rotate a log at its size limit
// between two lines, keep log_keep files, and lose or split no line, also
// when two writers (an earlier run draining, the new run) share the log.
func TestLogWritersRotate(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	for _, w := range logWriters {
		t.Run(w.name, func(t *testing.T) {
			start := func(log string, max, keep int) (io.WriteCloser, *exec.Cmd) {
				return startWriter(t, w.prog, w.script, log, "", "0", log, fmt.Sprint(max), fmt.Sprint(keep))
			}
			// lines reads log.keep … log.1, log in order, without stamps.
			lines := func(log string, keep int) ([]string, map[string]int64) {
				var all []string
				sizes := map[string]int64{}
				for i := keep + 1; i >= 0; i-- {
					p := log
					if i > 0 {
						p = fmt.Sprintf("%s.%d", log, i)
					}
					data, err := os.ReadFile(p)
					if err != nil {
						continue
					}
					sizes[filepath.Base(p)] = int64(len(data))
					if len(data) == 0 {
						// A log rotated after the last line it took
						// (two writers: either one's) has no line yet.
						continue
					}
					for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
						if len(l) < 26 || l[0] != '[' || l[24] != ']' {
							t.Fatalf("%s: a line without its stamp (split?): %q", p, l)
						}
						all = append(all, l[26:])
					}
				}
				return all, sizes
			}
			const n, max = 300, 2048
			payload := strings.Repeat("x", 40)

			// Keep 3: the newest lines, in order and whole; older files go.
			log := filepath.Join(t.TempDir(), "a.log")
			in, cmd := start(log, max, 3)
			for i := 0; i < n; i++ {
				fmt.Fprintf(in, "line %04d %s\n", i, payload)
			}
			in.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			got, sizes := lines(log, 3)
			if _, err := os.Stat(log + ".4"); err == nil {
				t.Errorf("a fourth rotated file with log_keep 3")
			}
			for name, s := range sizes {
				if s > max+80 {
					t.Errorf("%s is %d bytes, over the %d limit by more than a line", name, s, max)
				}
			}
			if len(sizes) != 4 || len(got) == 0 || got[len(got)-1] != fmt.Sprintf("line %04d %s", n-1, payload) {
				t.Fatalf("files %v; last line %q", sizes, got[len(got)-1])
			}
			first := n - len(got)
			for i, l := range got {
				if want := fmt.Sprintf("line %04d %s", first+i, payload); l != want {
					t.Fatalf("line %d of what was kept is %q, want %q", i, l, want)
				}
			}

			// Two writers on one log, each rotating it: every line of
			// both is somewhere, once.
			log = filepath.Join(t.TempDir(), "b.log")
			a, ca := start(log, max, 50)
			b, cb := start(log, max, 50)
			for i := 0; i < n; i++ {
				fmt.Fprintf(a, "a %04d %s\n", i, payload)
				fmt.Fprintf(b, "b %04d %s\n", i, payload)
			}
			a.Close()
			b.Close()
			if err := errors.Join(ca.Wait(), cb.Wait()); err != nil {
				t.Fatal(err)
			}
			got, sizes = lines(log, 50)
			seen := map[string]int{}
			for _, l := range got {
				seen[l]++
			}
			for _, who := range []string{"a", "b"} {
				for i := 0; i < n; i++ {
					if l := fmt.Sprintf("%s %04d %s", who, i, payload); seen[l] != 1 {
						t.Errorf("%q is there %d times", l, seen[l])
					}
				}
			}
			if len(sizes) < 5 || len(got) != 2*n {
				t.Errorf("%d lines in %d files", len(got), len(sizes))
			}
		})
	}
}

// Issue 16, `launcher logs`: ReadLog filters on the machine (awk) exactly
// as executor.FilterLog says, across the rotated files, oldest first.
func TestReadLogAgreesWithFilterLog(t *testing.T) {
	m := newLocal(t)
	ctx := context.Background()
	dir := t.TempDir()
	log := filepath.Join(dir, "a.log")
	now := time.Now()
	stamp := func(ago time.Duration) string { return now.Add(-ago).Format("[2006-01-02 15:04:05.000] ") }
	var all []string
	files := map[string][]string{}
	add := func(file string, ago time.Duration, text string) {
		l := stamp(ago) + text
		files[file] = append(files[file], l)
		all = append(all, l)
	}
	add(log+".2", 3*time.Hour, executor.StartLine("a", "r1"))
	add(log+".2", 3*time.Hour, "old output")
	add(log+".2", 2*time.Hour, executor.ExitLine("a", 1, "r1"))
	add(log+".1", 2*time.Hour, executor.StartLine("a", "r2"))
	add(log+".1", 90*time.Minute, "r2 output one")
	add(log+".1", 30*time.Minute, "[launcher] a failed with code 2; restarting in 1.000s (run r2)")
	add(log, 20*time.Minute, "r2 output two")
	add(log, 10*time.Minute, executor.ExitLine("a", 130, "r2"))
	add(log, 5*time.Minute, executor.StartLine("a", "r3"))
	add(log, 4*time.Minute, "r3 output with (run r2) in it")
	add(log, time.Minute, "r3 last")
	for f, ls := range files {
		if err := os.WriteFile(f, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []executor.LogQuery{{}, {Last: 3}, {Since: time.Hour}, {Run: "r2"}, {Run: "r2", Last: 2},
		{Run: "r9"}, {Runs: true}, {Since: 15 * time.Minute, Runs: true}, {Since: 100 * time.Minute, Run: "r2"}} {
		s, err := m.ReadLog(ctx, log, q)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(s)
		if err != nil || s.Wait() != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		s.Close()
		want := executor.FilterLog(all, q, now)
		got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(out) == 0 {
			got = nil
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%+v:\n got %q\nwant %q", q, got, want)
		}
		if len(want) == 0 && q.Run != "r9" {
			t.Errorf("%+v selects nothing: the case tests little", q)
		}
	}
}

// readFile is path's content ("" when it cannot be read).
func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestCommandStartedOnceTheEnvFileIsEmptied: a stop's C-c waits while the
// run's env file has its content (the pane's bash still reads .bashrc),
// and not once the prologue emptied it, before its log writer removes it.
func TestCommandStartedOnceTheEnvFileIsEmptied(t *testing.T) {
	m := newLocal(t)
	ctx := context.Background()
	w, err := m.Spawn(ctx, executor.SpawnSpec{Session: "began", Name: "p", Script: "sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	if !executortest.Poll(func() bool { return len(envFiles(t, m, w.Marks.Tag)) == 0 }) {
		t.Fatalf("the env file of a started run is still there: %v", envFiles(t, m, w.Marks.Tag))
	}
	f := filepath.Join(m.scripts.runDir, w.Marks.Tag+"-0123abcd.env")
	if err := os.WriteFile(f, []byte("export X=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if began, err := m.commandStarted(ctx, w.Marks.Tag); err != nil || began {
		t.Errorf("with the env file unread: began %v, %v", began, err)
	}
	if err := os.Truncate(f, 0); err != nil {
		t.Fatal(err)
	}
	if began, err := m.commandStarted(ctx, w.Marks.Tag); err != nil || !began {
		t.Errorf("with the env file emptied: began %v, %v", began, err)
	}
}

// TestBatchFilledToTmuxsLimit: requests queued behind a busy invocation are
// packed into the next ones up to the byte budget, with the listing at the
// end; tmux accepts such a full command list (no "command too long"), and
// they take few invocations.
func TestBatchFilledToTmuxsLimit(t *testing.T) {
	m := newLocal(t)
	ctx := context.Background()
	w, err := m.Spawn(ctx, executor.SpawnSpec{Session: "full", Name: "w", Script: "sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	sizes := &argvHost{Host: m.Host, prefix: len(m.tmux())}
	m.Host = sizes
	// An invocation that holds the leader (a tmux wait-for) until the
	// others are all queued.
	busy := make(chan error, 1)
	go func() {
		_, err := m.batch(ctx, [][]string{{"wait-for", "launcher-test-hold"}})
		busy <- err
	}()
	if !executortest.Poll(func() bool { return sizes.calls() == 1 }) {
		t.Fatal("the holding invocation did not start")
	}
	value := strings.Repeat("v", 900)
	const n = 40 // 40 × ~1 KB: more than one full batch
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, _, _, err := m.batchListing(ctx, [][]string{{"set-option", "-w", "-t", w.ID, "@launcher_fill", value}})
			done <- err
		}()
	}
	queued := func() bool {
		m.batcher.mu.Lock()
		defer m.batcher.mu.Unlock()
		return len(m.batcher.queue) == n
	}
	if !executortest.Poll(queued) {
		t.Fatal("the requests did not queue")
	}
	if out, err := exec.Command("tmux", "-S", m.opts.Socket, "wait-for", "-S", "launcher-test-hold").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatalf("a request of a full batch: %v", err)
		}
	}
	calls, largest := sizes.calls()-1, sizes.largest()
	if calls > n/10 {
		t.Errorf("%d requests of 1 KB took %d invocations", n, calls)
	}
	if largest < maxBatchBytes-1500 || largest > tmuxMessageMax {
		t.Errorf("the largest command list was %d bytes; the budget is %d, tmux's limit %d", largest, maxBatchBytes, tmuxMessageMax)
	}
}

// argvHost counts tmux invocations and records the size of the largest
// command list tmux got (its arguments after the socket and config
// options, each with its NUL).
type argvHost struct {
	executor.Host
	prefix int // tmux and its options
	mu     sync.Mutex
	n      int
	max    int
}

func (h *argvHost) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	size := 0
	for _, a := range cmd.Args[h.prefix:] {
		size += len(a) + 1
	}
	h.mu.Lock()
	h.n++
	h.max = max(h.max, size)
	h.mu.Unlock()
	return h.Host.Run(ctx, cmd)
}

func (h *argvHost) calls() int   { h.mu.Lock(); defer h.mu.Unlock(); return h.n }
func (h *argvHost) largest() int { h.mu.Lock(); defer h.mu.Unlock(); return h.max }

// TestFollowerEndsWithItsReader: a log follower whose reader died while
// the log was idle (launcher serve killed, its followers left to init)
// ends, instead of polling a log nobody reads for ever.
func TestFollowerEndsWithItsReader(t *testing.T) {
	executortest.RequireTool(t, "perl", "bash")
	log := filepath.Join(t.TempDir(), "idle.log")
	if err := os.WriteFile(log, []byte("a line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// bash stands for launcher: the follower is its child, writing to a
	// pipe this test keeps open (so no SIGPIPE tells it anything).
	// Its pid comes on stderr: the follower may write before bash does.
	cmd := exec.Command("bash", "-c", `perl -e "$1" -- "$2" 0 & echo "$!" >&2; wait`, "bash", perlFollower, log)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pidOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A failure below must not leave bash (and the follower it waits
	// for) behind.
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	first, err := bufio.NewReader(pidOut).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("pid line %q", first)
	}
	t.Cleanup(func() {
		// Only a follower still there (its pid not reused) is killed.
		if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cl, []byte(log)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "a line\n" {
		t.Fatalf("the follower wrote %q, %v", line, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	gone := func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		i := bytes.LastIndexByte(st, ')')
		return i > 0 && len(st) > i+2 && st[i+2] == 'Z' // exited (init here may not reap)
	}
	if !executortest.Poll(gone) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatal("the follower still runs after its reader died")
	}
}

// TestLogHeadSizeAgreesWithTheScript: locally the size of a log is read
// without a shell; it says what the script says, for a log, a missing one,
// a folder and a symbolic link to a log.
func TestLogHeadSizeAgreesWithTheScript(t *testing.T) {
	m := newLocal(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	if err := os.WriteFile(log, []byte("one\ntwo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(log, filepath.Join(dir, "link.log")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p.log", "missing.log", "folder", "link.log"} {
		path := filepath.Join(dir, name)
		out, err := exec.Command("sh", "-c", logHeadScript, "sh", path, "0").Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		got, lines, err := m.LogHead(context.Background(), path, 0)
		if err != nil || got != want || len(lines) != 0 {
			t.Errorf("%s: size %d, %d lines, %v; the script says %d", name, got, len(lines), err, want)
		}
	}
}

// TestPerlWriterClockWithoutModules: on this machine the perl writer reads
// the clock with gettimeofday(2) by its number and loads neither
// Time::HiRes nor Errno (a third of its start, once per pane), and its
// timestamps are the wall clock to the millisecond. A machine not in its
// table (here: x86-64 taken out of it) loads Time::HiRes, same stamps.
func TestPerlWriterClockWithoutModules(t *testing.T) {
	executortest.RequireTool(t, "perl")
	t.Run("syscall", func(t *testing.T) { checkPerlWriterClock(t, perlWriter, false) })
	table := "(62 => 96, 183 => 169, 243 => 169)"
	if !strings.Contains(perlWriter, table) {
		t.Fatalf("the writer's table of syscall numbers is not %s", table)
	}
	t.Run("Time::HiRes", func(t *testing.T) {
		checkPerlWriterClock(t, strings.Replace(perlWriter, table, "(183 => 169, 243 => 169)", 1), true)
	})
}

func checkPerlWriterClock(t *testing.T, writer string, hires bool) {
	// The writer runs as a file (do FILE), as pipe-pane runs it; the END
	// block reports the modules it loaded.
	script := filepath.Join(t.TempDir(), "logwriter.pl")
	if err := os.WriteFile(script, []byte(writer), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("perl", "-e", `END { print STDERR "INC ", join(",", sort keys %INC), "\n" } my $f = shift; do $f; die $@ if $@`, script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Each line goes once the one before is in the output, so its stamp
	// falls between the test's two clock readings around it.
	for i := 0; i < 20; i++ {
		before := time.Now()
		fmt.Fprintf(in, "line %d\n", i)
		var l string
		select {
		case l = <-lines:
		case <-time.After(executortest.Patience):
			t.Fatalf("line %d never came out", i)
		}
		after := time.Now()
		ts, err := time.ParseInLocation("[2006-01-02 15:04:05.000]", l[:min(len(l), 25)], time.Local)
		if err != nil || l[25:] != fmt.Sprintf(" line %d", i) {
			t.Fatalf("line %d: %q: %v", i, l, err)
		}
		// The writer truncates to the millisecond.
		if ts.Before(before.Truncate(time.Millisecond)) || ts.After(after) {
			t.Errorf("line %d stamped %s, written between %s and %s", i, ts.Format(time.StampMilli), before.Format(time.StampMilli), after.Format(time.StampMilli))
		}
	}
	in.Close()
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer: %v: %s", err, errb.String())
	}
	mods := errb.String()
	if !strings.Contains(mods, "INC ") || strings.Contains(mods, "Errno") || strings.Contains(mods, "HiRes") != hires {
		t.Errorf("modules the writer loaded (Time::HiRes expected: %v): %q", hires, mods)
	}
}
