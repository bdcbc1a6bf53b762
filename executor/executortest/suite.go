package executortest

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Hostile is a table of shell commands full of quotes, expansions and
// metacharacters. Every transport must deliver each of them to bash byte
// for byte: the output on the machine equals the output of a local
// `bash -c` of the same text.
var Hostile = []string{
	`echo "double" 'single' it\'s`,
	`printf '%s|' "$X" '$X' "$(echo sub)" '$(echo nosub)' ` + "`echo backquote`" + `; echo`,
	`a=1; b=2 && echo "$a$b" || echo no`,
	`echo one | tr a-z A-Z; echo two`,
	`printf 'back\\slash %s\n' 'lit\n'`,
	`echo 'semi;colon' "amp&&ersand" 'pipe|bar' "redir>x" "<y"`,
	`x='  spaces  '; printf '[%s]\n' "$x"`,
	"printf '%s\\n' \"multi\nline\"",
	`echo {a,b} '{x}' "{{y}}" '#{session_name}' '%Y'`,
	`echo $'ansi\tquote'`,
	`f() { echo "func $1"; }; f arg`,
	`echo ünïcödé ✓ 'x; touch /tmp/launcher-pwned'`,
	`echo "$X" | sed 's/[$]/DOLLAR/g'`,
}

// HostileEnv is the environment the hostile commands see.
var HostileEnv = []executor.EnvVar{{Name: "X", Value: `$(touch /tmp/launcher-pwned) ; ' " \ $HOME`}}

// Expected runs script with local bash, as the reference for Hostile.
func Expected(t testing.TB, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	for _, e := range HostileEnv {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("local bash -c %q: %v", script, err)
	}
	return string(out)
}

// Target is what the conformance suite runs against: a machine and,
// optionally, a running container on it.
type Target struct {
	Machine   executor.Machine
	Container string // "" skips the container cases
	// Session is a tmux session name private to this run.
	Session string
}

// Suite is the conformance suite every executor.Machine implementation
// that runs real commands (local tmux, tmux over SSH, with and without a
// container) passes: the contract every machine honours, and the
// transport's own cases. It is restic's backend-suite idea: one set of
// behaviours, many transports.
func Suite(t *testing.T, tg Target) {
	Contract(t, tg)
	Transport(t, tg)
}

// Contract is the part of the suite every machine passes, the fake
// included: windows, marks, exit codes, signals, the log-line contract,
// logs and concurrent spawns. Its scripts use a small vocabulary (echo,
// sleep, exit, trap with an empty action, while true loops) that the fake interprets.
func Contract(t *testing.T, tg Target) {
	m := tg.Machine
	ctx, cancel := context.WithTimeout(context.Background(), 3*Patience)
	defer cancel()

	t.Run("LogLineContract", func(t *testing.T) {
		// The lines that frame a run are exactly executor's contract.
		w := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "contract", Script: "echo body; exit 3", Marks: executor.Marks{Tag: "t0k3n"}})
		waitDead(t, ctx, m, w.ID)
		waitLog(t, ctx, m, w.Marks.Log, "exited with code")
		_, lines, err := m.LogHead(ctx, w.Marks.Log, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range lines {
			got = append(got, executor.StripTimestamp(l))
		}
		want := []string{executor.StartLine("contract", "t0k3n"), "body", executor.ExitLine("contract", 3, "t0k3n")}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("log lines:\n got %q\nwant %q", got, want)
		}
		if !executor.IsStartLine(lines[0], "t0k3n") || !executor.IsExitLine(lines[len(lines)-1], "t0k3n") || executor.IsLauncherLine(lines[1]) {
			t.Errorf("contract predicates disagree with %q", lines)
		}
	})

	t.Run("SnapshotMarksAndExitCodes", func(t *testing.T) {
		// The request mark is kept byte for byte: quotes, a format's #{…},
		// a shell's $ and ; are text to it.
		const request = `{"p":{"robot":"a b; $HOME #{pane_pid} 'q'"},"v":["sim"]}`
		w := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "marks", Script: "sleep 0.3; exit 3",
			Marks: executor.Marks{Hash: "h1", Op: "starting x 1 2 3", Request: request}})
		snap, err := m.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ws := snap.Find(tg.Session, "marks")
		if len(ws) != 1 || !ws[0].Marks.Managed || ws[0].Marks.Hash != "h1" || ws[0].Marks.Op != "starting x 1 2 3" || ws[0].Dead || ws[0].Marks.Request != request {
			t.Fatalf("window: %+v", ws)
		}
		if err := m.SetMarks(ctx, w.ID, executor.SetReady(true).And(executor.SetOp(""))); err != nil {
			t.Fatal(err)
		}
		final := waitDead(t, ctx, m, w.ID)
		if !final.ExitKnown || final.ExitCode != 3 || !final.Marks.Ready || final.Marks.Op != "" {
			t.Errorf("dead window: %+v", final)
		}
		// Respawn the dead window in place.
		w2, err := m.Spawn(ctx, executor.SpawnSpec{Session: tg.Session, Name: "marks", Script: "exit 5", Replace: w.ID, Marks: executor.Marks{Tag: "again"}})
		if err != nil || w2.ID != w.ID {
			t.Fatalf("respawn: %+v %v", w2, err)
		}
		if final := waitDead(t, ctx, m, w.ID); final.ExitCode != 5 || final.Marks.Ready {
			t.Errorf("respawned: %+v", final)
		}
		if err := m.CloseWindow(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		snap, _ = m.Snapshot(ctx)
		if len(snap.Find(tg.Session, "marks")) != 0 {
			t.Error("window not closed")
		}
	})

	t.Run("SignalsEndEveryProcess", func(t *testing.T) {
		for _, docker := range dockerModes(tg) {
			// The key goes out once the command runs (inside the container
			// too): a C-c typed before docker exec attached is lost, which
			// the engine's escalation covers, not this test.
			w := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "gentle" + suffix(docker), Script: "echo running; sleep 300", Docker: docker})
			waitLog(t, ctx, m, w.Marks.Log, "] running")
			if err := m.Signal(ctx, w, executor.SIGINT, executor.SetOp("stopping")); err != nil {
				t.Fatal(err)
			}
			if final := waitDead(t, ctx, m, w.ID); final.Marks.Op != "stopping" {
				t.Errorf("docker=%q: C-c: %+v", docker, final)
			}
			// A C-c that kills a command of a loop ends the run with 130,
			// the interrupted job's code (bash itself ended with 1).
			loop := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "loop" + suffix(docker), Script: "echo running; while true; do sleep 0.2; done", Docker: docker})
			waitLog(t, ctx, m, loop.Marks.Log, "] running")
			if err := m.Signal(ctx, loop, executor.SIGINT, executor.SetOp("stopping")); err != nil {
				t.Fatal(err)
			}
			if final := waitDead(t, ctx, m, loop.ID); !final.ExitKnown || final.ExitCode != 130 {
				t.Errorf("docker=%q: C-c of a loop: exit %d (known %v), want 130", docker, final.ExitCode, final.ExitKnown)
			}
			// A process that ignores INT and TERM dies by KILL, inside a
			// container too.
			stub := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "stubborn" + suffix(docker), Docker: docker,
				Script: `trap '' INT TERM; echo ready; while true; do sleep 0.1; done`})
			waitLog(t, ctx, m, stub.Marks.Log, "ready")
			for _, sig := range []executor.Signal{executor.SIGINT, executor.SIGTERM} {
				if err := m.Signal(ctx, stub, sig, executor.MarkUpdate{}); err != nil {
					t.Fatal(err)
				}
			}
			if alive := stillAlive(ctx, m, stub.ID, 700*time.Millisecond); !alive {
				_, lines, _ := m.LogHead(ctx, stub.Marks.Log, 20)
				t.Fatalf("docker=%q: the stubborn process died of INT/TERM; log:\n%s", docker, strings.Join(lines, "\n"))
			}
			if err := m.Signal(ctx, stub, executor.SIGKILL, executor.MarkUpdate{}); err != nil {
				t.Fatal(err)
			}
			waitDead(t, ctx, m, stub.ID)
			if docker != "" {
				res, _ := m.Exec(ctx, executor.ExecSpec{Docker: docker, Script: "ps | grep -v grep | grep -c 'sleep 0.1' || true"})
				if strings.TrimSpace(string(res.Stdout)) != "0" {
					t.Errorf("a process of the stopped run is still alive in the container: %s", res.Stdout)
				}
			}
		}
	})

	t.Run("LogsFollowAndHead", func(t *testing.T) {
		// "late" must come after the head is read; on a loaded machine it
		// may come first, and the test tries again with a longer pause
		// (the pause only orders the lines, nothing waits on it).
		var w executor.Window
		var size int64
		pauses := []string{"0.5", "3", "10"}
		for i, pause := range pauses {
			w = spawn(t, ctx, m, tg, executor.SpawnSpec{Name: fmt.Sprintf("logs%d", i),
				Script: "echo line1; echo line2; echo line3; sleep " + pause + "; echo late; sleep 300"})
			waitLog(t, ctx, m, w.Marks.Log, "line3")
			var lines []string
			var err error
			size, lines, err = m.LogHead(ctx, w.Marks.Log, 2)
			if err == nil && len(lines) == 2 && strings.HasSuffix(lines[1], "] late") && i < len(pauses)-1 {
				_ = m.Signal(ctx, w, executor.SIGKILL, executor.MarkUpdate{})
				continue
			}
			if err != nil || size == 0 || len(lines) != 2 || !strings.HasSuffix(lines[1], "line3") {
				t.Fatalf("head: %d %q %v", size, lines, err)
			}
			break
		}
		s, err := m.FollowLog(ctx, w.Marks.Log, size)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		line, err := bufio.NewReader(s).ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "] late\n") {
			t.Errorf("follow: %q %v", line, err)
		}
		ps, err := m.Processes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range ps {
			if p.PID == w.PanePID {
				found = true
			}
		}
		if !found {
			t.Errorf("pane pid %d not in the process table", w.PanePID)
		}
		// The load rides with the process table where the machine can.
		if lr, ok := m.(executor.LoadReader); ok {
			ps, load, err := lr.ProcessesAndLoad(ctx)
			if err != nil || load == nil || load.CPUs < 1 || load.One < 0 || len(ps) == 0 {
				t.Errorf("ProcessesAndLoad: %d processes, load %+v, %v", len(ps), load, err)
			}
		}
		_ = m.Signal(ctx, w, executor.SIGKILL, executor.MarkUpdate{})
	})

	t.Run("ConcurrentSpawns", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = m.Spawn(ctx, executor.SpawnSpec{Session: tg.Session + "-many", Name: fmt.Sprintf("p%d", i), Script: "sleep 300",
					Marks: executor.Marks{Tag: fmt.Sprintf("t%d", i)}})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		snap, _ := m.Snapshot(ctx)
		seen := map[string]bool{}
		for _, w := range snap.Windows {
			if w.Session == tg.Session+"-many" {
				if seen[w.Name] {
					t.Errorf("duplicate window %s", w.Name)
				}
				seen[w.Name] = true
				_ = m.Signal(ctx, w, executor.SIGKILL, executor.MarkUpdate{})
			}
		}
		if len(seen) != 12 {
			t.Errorf("%d windows, want 12", len(seen))
		}
	})

}

// Transport is the part of the suite about running real commands on the
// machine: hostile commands byte for byte in bash -c and in panes, exit
// codes and timeouts of Exec, and containers.
func Transport(t *testing.T, tg Target) {
	m := tg.Machine
	ctx, cancel := context.WithTimeout(context.Background(), 3*Patience)
	defer cancel()

	// The log writer runs on the host: the target without a container
	// covers it.
	logRotation := func(t *testing.T) {
		// Issue 16, logs that last: the writer on the machine rotates the
		// log at its size; a follower started before the first line sees
		// every line once, in order, across the rotations, and the head
		// of a log just rotated reaches back into NAME.log.1.
		path, err := m.LogPath(ctx, tg.Session, "rot")
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.FollowLog(ctx, path, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		const n = 700
		// About 200 lines a second, a rotation every second or so: the
		// pace of a chatty node, not a synchronisation.
		w := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: "rot", Rotate: executor.LogRotation{MaxSize: 16 << 10, Keep: 20},
			Script: fmt.Sprintf(`for i in $(seq 1 %d); do echo "line $i of a chatty node's output"; [ $((i %% 20)) = 0 ] && sleep 0.1; done; echo done`, n)})
		r := bufio.NewReader(s)
		next := 1
		for next <= n {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("follow ended before line %d: %v", next, err)
			}
			body := executor.StripTimestamp(strings.TrimSuffix(l, "\n"))
			if executor.IsLauncherLine(body) {
				continue
			}
			if want := fmt.Sprintf("line %d of a chatty node's output", next); body != want {
				t.Fatalf("followed %q, want %q", body, want)
			}
			next++
		}
		waitLog(t, ctx, m, path, "] done")
		size, lines, err := m.LogHead(ctx, path, 300)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Exec(ctx, executor.ExecSpec{Script: "ls " + path + "*"})
		if err != nil || !strings.Contains(string(res.Stdout), path+".1") || !strings.Contains(string(res.Stdout), path+".2") {
			t.Fatalf("no rotated logs: %q %v", res.Stdout, err)
		}
		// Fewer than 300 lines since the last rotation: the head reaches
		// back into .1, seamlessly.
		var body []string
		for _, l := range lines {
			if b := executor.StripTimestamp(l); !executor.IsLauncherLine(b) {
				body = append(body, b)
			}
		}
		if size >= 16<<10 || len(lines) != 300 || len(body) < 2 || body[len(body)-1] != "done" {
			t.Fatalf("head after rotation: size %d, %d lines, body ends %q", size, len(lines), body[len(body)-1:])
		}
		for i := 1; i < len(body)-1; i++ {
			var a, b int
			fmt.Sscanf(body[i-1], "line %d", &a)
			fmt.Sscanf(body[i], "line %d", &b)
			if b != a+1 {
				t.Fatalf("head after rotation is not seamless at %q, %q", body[i-1], body[i])
			}
		}
		_ = m.Signal(ctx, w, executor.SIGKILL, executor.MarkUpdate{})
	}
	if tg.Container == "" {
		t.Run("LogRotation", logRotation)
	}

	t.Run("ExecHostileCommands", func(t *testing.T) {
		for _, docker := range dockerModes(tg) {
			for _, script := range Hostile {
				res, err := m.Exec(ctx, executor.ExecSpec{Script: script, Env: HostileEnv, Docker: docker, Timeout: 20 * time.Second})
				if err != nil {
					t.Fatalf("exec %q: %v", script, err)
				}
				if want := Expected(t, script); string(res.Stdout) != want {
					t.Errorf("docker=%q exec %q:\n got %q\nwant %q (stderr %q)", docker, script, res.Stdout, want, res.Stderr)
				}
			}
			res, err := m.Exec(ctx, executor.ExecSpec{Script: "test -e /tmp/launcher-pwned", Docker: docker})
			if err != nil || res.ExitCode == 0 {
				t.Errorf("docker=%q: a hostile value was executed (/tmp/launcher-pwned exists)", docker)
			}
		}
	})

	t.Run("ExecExitCodesStderrTimeout", func(t *testing.T) {
		res, err := m.Exec(ctx, executor.ExecSpec{Script: "echo out; echo err >&2; exit 7"})
		if err != nil || res.ExitCode != 7 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
			t.Errorf("got %+v, %v", res, err)
		}
		// An hour's sleep: ending at all is the timeout's work.
		res, err = m.Exec(ctx, executor.ExecSpec{Script: "sleep 3600", Timeout: 500 * time.Millisecond})
		if err != nil || res.ExitCode == 0 {
			t.Errorf("timeout: %+v %v", res, err)
		}
		res, err = m.Exec(ctx, executor.ExecSpec{Script: "pwd; echo $V", Cwd: "/", Env: []executor.EnvVar{{Name: "V", Value: "v 1"}}})
		if err != nil || string(res.Stdout) != "/\nv 1\n" {
			t.Errorf("cwd/env: %q %v", res.Stdout, err)
		}
	})

	t.Run("SpawnHostileCommandsLogged", func(t *testing.T) {
		for _, docker := range dockerModes(tg) {
			for i, script := range Hostile {
				name := fmt.Sprintf("hostile%d%s", i, map[bool]string{true: "-c", false: ""}[docker != ""])
				w := spawn(t, ctx, m, tg, executor.SpawnSpec{Name: name, Script: script + "; sleep 0.2", Docker: docker, Env: HostileEnv})
				waitDead(t, ctx, m, w.ID)
				got := logBody(t, ctx, m, w.Marks.Log, w.Marks.Tag)
				want := Expected(t, script)
				if got != want {
					t.Errorf("docker=%q pane %q:\n got %q\nwant %q", docker, script, got, want)
				}
			}
		}
	})

	if tg.Container != "" {
		t.Run("MissingContainerIsAClearError", func(t *testing.T) {
			err := m.CheckContainer(ctx, "no-such-container")
			if err == nil || !strings.Contains(err.Error(), `"no-such-container"`) || !strings.Contains(err.Error(), m.Machine()) {
				t.Errorf("missing container: %v", err)
			}
			if err := m.CheckContainer(ctx, tg.Container); err != nil {
				t.Errorf("running container: %v", err)
			}
		})
	}
}

func dockerModes(tg Target) []string {
	if tg.Container == "" {
		return []string{""}
	}
	return []string{"", tg.Container}
}

func suffix(docker string) string {
	if docker == "" {
		return ""
	}
	return "-c"
}

func spawn(t *testing.T, ctx context.Context, m executor.Machine, tg Target, spec executor.SpawnSpec) executor.Window {
	t.Helper()
	spec.Session = tg.Session
	if spec.Marks.Tag == "" {
		spec.Marks.Tag = strings.ReplaceAll(spec.Name, "-", "") + fmt.Sprint(time.Now().UnixNano()%100000)
	}
	w, err := m.Spawn(ctx, spec)
	if err != nil {
		t.Fatalf("spawn %s: %v", spec.Name, err)
	}
	return w
}

func waitDead(t *testing.T, ctx context.Context, m executor.Machine, id string) executor.Window {
	t.Helper()
	var last executor.Window
	if !Poll(func() bool {
		snap, err := m.Snapshot(ctx)
		if err != nil {
			return false
		}
		for _, w := range snap.Windows {
			if w.ID == id {
				last = w
				return w.Dead && w.ExitKnown
			}
		}
		return false
	}) {
		ps, _ := exec.Command("sh", "-c", `ps -o pid,ppid,stat,wchan:20,args -p $1; pp=$(ps -o ppid= -p $1); ps -o pid,stat,args -p $pp; grep Sig /proc/$pp/status`, "sh", fmt.Sprint(last.PanePID)).CombinedOutput()
		t.Fatalf("window %s did not die: %+v\n%s", id, last, ps)
	}
	return last
}

func stillAlive(ctx context.Context, m executor.Machine, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		snap, err := m.Snapshot(ctx)
		if err != nil {
			return false
		}
		for _, w := range snap.Windows {
			if w.ID == id && w.Dead {
				return false
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func waitLog(t *testing.T, ctx context.Context, m executor.Machine, path, want string) {
	t.Helper()
	var lines []string
	if !Poll(func() bool {
		_, lines, _ = m.LogHead(ctx, path, 50)
		return strings.Contains(strings.Join(lines, "\n"), want)
	}) {
		t.Fatalf("log %s lacks %q: %q", path, want, lines)
	}
}

// logBody returns the output of run tag in a log: its lines, without
// timestamps and launcher's own lines.
func logBody(t *testing.T, ctx context.Context, m executor.Machine, path, tag string) string {
	t.Helper()
	waitLog(t, ctx, m, path, "(run "+tag+")")
	var lines []string
	if !Poll(func() bool {
		_, lines, _ = m.LogHead(ctx, path, 1000)
		return strings.Contains(strings.Join(lines, "\n"), "exited with code")
	}) {
		t.Fatalf("log %s has no exit line: %q", path, lines)
	}
	var b strings.Builder
	in := false
	for _, l := range lines {
		body := l
		if len(l) > 26 && l[0] == '[' && l[24] == ']' {
			body = l[26:]
		}
		switch {
		case strings.HasPrefix(body, "[launcher] starting") && strings.Contains(body, "(run "+tag+")"):
			in = true
		case strings.Contains(body, "(run "+tag+")"):
			in = false
		case in:
			b.WriteString(body + "\n")
		}
	}
	return b.String()
}
