package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/fake"
)

// newTestEngine returns an engine on fake machines and a function that
// returns the events published so far.
func newTestEngine(t *testing.T, yaml string) (*Engine, *fake.Connector, func() []Event) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	conn := fake.NewConnector()
	e := New(Options{Config: cfg, Connector: conn})
	var mu sync.Mutex
	var events []Event
	unsub := e.Bus().Subscribe(nil, func(ev Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	t.Cleanup(unsub)
	return e, conn, func() []Event {
		e.Bus().Flush()
		mu.Lock()
		defer mu.Unlock()
		return append([]Event(nil), events...)
	}
}

func local(t *testing.T, c *fake.Connector) *fake.Machine {
	m, err := c.Get("local")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), executortest.Patience)
	t.Cleanup(cancel)
	return ctx
}

const diamond = `
context: {session: s}
base: {cmd: base, ready_check: "true"}
left: {cmd: left, depends: [base], ready_check: check-left}
right: {cmd: right, depends: [base], ready_check: check-right}
top: {cmd: top, depends: [left, right]}
`

func TestDiamondRunsBaseOnceAndBranchesConcurrently(t *testing.T) {
	e, conn, _ := newTestEngine(t, diamond)
	m := local(t, conn)
	// Each branch's check passes only once the other branch was spawned:
	// sequential branches would never get ready.
	m.Check = func(spec executor.ExecSpec) executor.Result {
		other := map[string]string{"check-left": "right", "check-right": "left"}[spec.Script]
		if other != "" && m.Spawned(other) == 0 {
			return executor.Result{ExitCode: 1}
		}
		return executor.Result{}
	}
	if err := e.Start(ctxT(t), []string{"top"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"base", "left", "right", "top"} {
		if got := m.Spawned(n); got != 1 {
			t.Errorf("%s spawned %d times", n, got)
		}
	}
	sts, err := e.Status(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.State != StateReady {
			t.Errorf("%s: %s", st.Process, st.State)
		}
	}
}

func TestEventsOfAStart(t *testing.T) {
	e, _, events := newTestEngine(t, `
context: {session: s}
a: {cmd: a, ready_check: "true"}
b: {cmd: b, depends: [a]}
`)
	if err := e.Start(ctxT(t), []string{"b"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, ev := range events() {
		seq = append(seq, ev.Process+":"+string(ev.Kind))
	}
	got := strings.Join(seq, " ")
	for _, want := range []string{"b:waiting", "a:starting", "a:started", "a:checking", "a:ready", "b:starting", "b:started", "b:ready"} {
		if !strings.Contains(got, want) {
			t.Errorf("events lack %s: %s", want, got)
		}
	}
	if strings.Index(got, "a:ready") > strings.Index(got, "b:starting") {
		t.Errorf("b started before a was ready: %s", got)
	}
}

func TestFailedOneShotFailsDependants(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
calib: {cmd: calib, persistent: false}
app: {cmd: app, depends: [calib]}
`)
	m := local(t, conn)
	m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		if spec.Name == "calib" {
			return fake.Behaviour{ExitAfter: 10 * time.Millisecond, ExitCode: 4, Output: []string{"calibrating"}}
		}
		return fake.Behaviour{}
	}
	err := e.Start(ctxT(t), []string{"app"}, config.Request{})
	var pe *ProcessError
	if !errors.As(err, &pe) || pe.Process != "app" {
		t.Fatalf("want ProcessError for app, got %v", err)
	}
	if m.Spawned("app") != 0 {
		t.Error("app started although calib failed")
	}
}

func TestOneShotSuccessClosesWindowAndReportsOutput(t *testing.T) {
	e, conn, events := newTestEngine(t, `
context: {session: s}
home: {cmd: home, persistent: false}
`)
	m := local(t, conn)
	m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		return fake.Behaviour{ExitAfter: 20 * time.Millisecond, Output: []string{"homing", "homed"}}
	}
	if err := e.Start(ctxT(t), []string{"home"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, ev := range events() {
		if ev.Kind == Output {
			lines = append(lines, ev.Line)
		}
	}
	if strings.Join(lines, ",") != "homing,homed" {
		t.Errorf("output events: %q", lines)
	}
	snap, _ := m.Snapshot(ctxT(t))
	if len(snap.Windows) != 0 {
		t.Errorf("window of a successful one-shot kept: %+v", snap.Windows)
	}
}

func TestDiedBeforeReady(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a, ready_check: "false"}
`)
	m := local(t, conn)
	m.Check = func(executor.ExecSpec) executor.Result { return executor.Result{ExitCode: 1} }
	m.Behave = func(executor.SpawnSpec) fake.Behaviour {
		return fake.Behaviour{ExitAfter: 30 * time.Millisecond, ExitCode: 3, Output: []string{"fatal: no model"}}
	}
	err := e.Start(ctxT(t), []string{"a"}, config.Request{})
	var pe *ProcessError
	if !errors.As(err, &pe) || pe.ExitCode == nil || *pe.ExitCode != 3 {
		t.Fatalf("want exit code 3, got %v", err)
	}
	if len(pe.Tail) == 0 || !strings.Contains(strings.Join(pe.Tail, "\n"), "fatal: no model") {
		t.Errorf("tail: %q", pe.Tail)
	}
}

func TestReadyTimeoutLeavesProcessRunning(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a, ready_check: "false", ready_timeout: 150ms}
`)
	m := local(t, conn)
	m.Check = func(executor.ExecSpec) executor.Result { return executor.Result{ExitCode: 1} }
	err := e.Start(ctxT(t), []string{"a"}, config.Request{})
	if err == nil || !strings.Contains(err.Error(), "ready_timeout") {
		t.Fatalf("got %v", err)
	}
	sts, _ := e.Status(ctxT(t), []string{"a"})
	if sts[0].State != StateRunning {
		t.Errorf("state %s, want RUNNING (not killed, not STARTING)", sts[0].State)
	}
}

func TestKillOrderAndEscalation(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
core: {cmd: core}
mid: {cmd: mid, depends: [core]}
stubborn: {cmd: stub, depends: [core], stop_timeout: 200ms}
`)
	m := local(t, conn)
	m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		if spec.Name == "stubborn" {
			return fake.Behaviour{IgnoreInt: true, IgnoreTerm: true}
		}
		return fake.Behaviour{}
	}
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"mid", "stubborn"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, []string{"core"}, false, KillOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(m.Calls(), "\n")
	for _, want := range []string{"signal stubborn INT", "signal stubborn TERM", "signal stubborn KILL", "signal mid INT", "signal core INT"} {
		if !strings.Contains(calls, want) {
			t.Errorf("calls lack %q:\n%s", want, calls)
		}
	}
	if strings.Index(calls, "signal core INT") < strings.Index(calls, "signal stubborn KILL") {
		t.Errorf("core signalled before its dependants stopped:\n%s", calls)
	}
	sts, _ := e.Status(ctx, nil)
	for _, st := range sts {
		if st.State != StateStopped {
			t.Errorf("%s: %s", st.Process, st.State)
		}
	}
}

// A stop right after a start reaches a pane still reading the user's
// .bashrc: its C-c would be lost (and the process stopped only by SIGTERM
// at half of stop_timeout). The SIGINT is sent once the command started.
func TestStopWaitsForThePaneToStartItsCommand(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
slowrc: {cmd: node, stop_timeout: 1h}
`)
	m := local(t, conn)
	m.Behave = func(executor.SpawnSpec) fake.Behaviour { return fake.Behaviour{StartupDelay: 100 * time.Millisecond} }
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"slowrc"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, []string{"slowrc"}, false, KillOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(m.Calls(), "\n")
	if strings.Contains(calls, "TERM") || !strings.Contains(calls, "signal slowrc INT") {
		t.Errorf("want a stop by SIGINT alone:\n%s", calls)
	}
	sts, _ := e.Status(ctx, nil)
	if sts[0].State != StateStopped || sts[0].ExitCode == nil || *sts[0].ExitCode != 130 {
		t.Errorf("after the stop: %+v", sts[0])
	}
}

func TestForceSkipsGentleStep(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a}
b: {cmd: b, force_sigquit: true}
`)
	m := local(t, conn)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"a", "b"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, []string{"a"}, false, KillOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, []string{"b"}, false, KillOptions{}); err != nil {
		t.Fatal(err)
	}
	// force: SIGKILL at once; force_sigquit: SIGQUIT first.
	calls := strings.Join(m.Calls(), "\n")
	if strings.Contains(calls, "INT") || !strings.Contains(calls, "signal a KILL") || strings.Contains(calls, "signal a QUIT") || !strings.Contains(calls, "signal b QUIT") {
		t.Errorf("calls:\n%s", calls)
	}
}

func TestStatusStatesAndUnavailableMachine(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
web: {cmd: web}
dead: {cmd: dead}
far: {cmd: far, machine: robot@10.0.0.2}
never: {cmd: never}
`)
	m := local(t, conn)
	conn.Down["robot@10.0.0.2"] = true
	m.AddForeign("s", "web")
	m.Behave = func(spec executor.SpawnSpec) fake.Behaviour {
		return fake.Behaviour{ExitAfter: time.Millisecond, ExitCode: 2}
	}
	ctx := ctxT(t)
	_ = e.Start(ctx, []string{"dead"}, config.Request{})
	var sts []Status
	executortest.Eventually(t, "dead is DEAD", func() bool {
		var err error
		if sts, err = e.Status(ctx, nil); err != nil {
			t.Fatal(err)
		}
		return sts[1].State == StateDead
	})
	want := map[string]State{"web": StateConflict, "dead": StateDead, "far": StateUnavailable, "never": StateStopped}
	for _, st := range sts {
		if st.State != want[st.Process] {
			t.Errorf("%s: %s, want %s (%s)", st.Process, st.State, want[st.Process], st.Error)
		}
	}
	if err := e.Start(ctx, []string{"web"}, config.Request{}); err == nil || !strings.Contains(err.Error(), "unmanaged tmux window") {
		t.Errorf("start of a conflicting window: %v", err)
	}
}

func TestStaleOperationMarkIsIgnored(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a}
`)
	m := local(t, conn)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"a"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	snap, _ := m.Snapshot(ctx)
	id := snap.Windows[0].ID
	// A launcher on this host whose process is gone (pid 1 has another
	// start time), and one on another host that stopped its heartbeat.
	gone := Owner{Host: e.owner.Host, PID: 1, Start: "42"}.mark("starting", time.Now())
	for _, mark := range []string{gone, Owner{Host: "laptop", PID: 5, Start: "9"}.mark("stopping", time.Now().Add(-time.Minute))} {
		_ = m.SetMarks(ctx, id, executor.SetOp(mark).And(executor.SetReady(false)))
		sts, _ := e.Status(ctx, nil)
		if sts[0].State != StateRunning {
			t.Errorf("mark %q: %s, want RUNNING", mark, sts[0].State)
		}
	}
	live := Owner{Host: "laptop", PID: 5, Start: "9"}.mark("starting", time.Now())
	_ = m.SetMarks(ctx, id, executor.SetOp(live))
	if sts, _ := e.Status(ctx, nil); sts[0].State != StateStarting {
		t.Errorf("live mark: %s", sts[0].State)
	}
}

// A robot's clock and the operator's laptop's often disagree by minutes.
// Marks carry times in the machine's clock, and are read against it: a
// live stop by another launcher holds whatever our clock says, and a dead
// one is not taken for live until our clock catches up with the robot's.
func TestMarksAreReadInTheMachinesClock(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a}
`)
	m := local(t, conn)
	m.Ahead = 10 * time.Minute
	ctx := ctxT(t)
	begun := time.Now()
	if err := e.Start(ctx, []string{"a"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	snap, _ := m.Snapshot(ctx)
	w := snap.Windows[0]
	// The mark's start lies in the machine's clock between Start and now
	// (it keeps whole milliseconds).
	if st := time.UnixMilli(w.Marks.Started); st.Before(begun.Add(m.Ahead).Truncate(time.Millisecond)) || st.After(m.Clock()) {
		t.Errorf("started mark %v is not in the machine's clock between the start (%v) and now", st, begun.Add(m.Ahead))
	}
	if sts, _ := e.Status(ctx, nil); sts[0].Age < 0 || sts[0].Age > time.Since(begun)+time.Millisecond {
		t.Errorf("age %s, want at most the %s since the start (by the machine's clock)", sts[0].Age, time.Since(begun))
	}
	laptop := Owner{Host: "laptop", PID: 5, Start: "9"}
	// A stop under way on another computer, its heartbeat 5 s old in the
	// machine's clock (10 min ahead of ours).
	_ = m.SetMarks(ctx, w.ID, executor.SetOp(laptop.mark("stopping", m.Clock().Add(-5*time.Second))))
	if sts, _ := e.Status(ctx, nil); sts[0].State != StateStopping {
		t.Errorf("live stop: %s, want STOPPING", sts[0].State)
	}
	if err := e.Start(ctx, []string{"a"}, config.Request{}); err == nil || !strings.Contains(err.Error(), "a stop wins") {
		t.Errorf("start during another launcher's stop: %v", err)
	}
	// One whose last heartbeat was 10 minutes ago on the machine (our
	// clock's now): its launcher is gone.
	_ = m.SetMarks(ctx, w.ID, executor.SetOp(laptop.mark("stopping", time.Now())))
	if sts, _ := e.Status(ctx, nil); sts[0].State != StateReady {
		t.Errorf("dead stop: %s, want READY", sts[0].State)
	}
}

func TestConcurrentOperationsDoNotInterfere(t *testing.T) {
	e, conn, _ := newTestEngine(t, diamond)
	m := local(t, conn)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Start(ctx, []string{"top"}, config.Request{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"base", "left", "right", "top"} {
		if got := m.Spawned(n); got != 1 {
			t.Errorf("%s spawned %d times by 4 concurrent starts", n, got)
		}
	}
}

func TestRestartBringsBackRunningDependants(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
core: {cmd: core}
app: {cmd: app, depends: [core]}
idle: {cmd: idle, depends: [core]}
`)
	m := local(t, conn)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"app"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Restart(ctx, "core", config.Request{}, KillOptions{}); err != nil {
		t.Fatal(err)
	}
	if m.Spawned("core") != 2 || m.Spawned("app") != 2 || m.Spawned("idle") != 0 {
		t.Errorf("spawns core=%d app=%d idle=%d", m.Spawned("core"), m.Spawned("app"), m.Spawned("idle"))
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{{"gpu-*", "gpu-0", true}, {"*", "x", true}, {"a?c", "abc", true}, {"a*", "b", false}, {"exact", "exact", true}, {"exact", "exactly", false}} {
		if Glob(c.p, c.s) != c.ok {
			t.Errorf("Glob(%q,%q) != %v", c.p, c.s, c.ok)
		}
	}
}

// An exit between Start and the monitor's first poll (a script that
// subscribes just after starting) must still be reported.
func TestMonitorReportsExitBeforeItsFirstPoll(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
core: {cmd: core}
other: {cmd: other}
`)
	m := local(t, conn)
	if err := e.Start(ctxT(t), []string{"core"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	// "other" was started by someone else and is already dead: not news.
	if _, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: "other", Script: "other", Marks: executor.Marks{Managed: true}}); err != nil {
		t.Fatal(err)
	}
	m.Exit("other", 1)
	m.Exit("core", 3)
	got := make(chan Event, 4)
	unsub := e.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Exited }, func(ev Event) { got <- ev })
	defer unsub()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	done := make(chan struct{})
	go func() { e.Monitor(ctx, 10*time.Millisecond); close(done) }()
	select {
	case ev := <-got:
		if ev.Process != "core" || ev.ExitCode == nil || *ev.ExitCode != 3 || ev.Expected {
			t.Fatalf("event %+v, want core exited with 3", ev)
		}
	case <-ctx.Done():
		t.Fatal("no exited event for core")
	}
	// The poll that reported core has finished once Monitor returns: it
	// reported nothing for "other".
	cancel()
	<-done
	e.Bus().Flush()
	select {
	case ev := <-got:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

// A run another launcher started and that restarted before the monitor's
// next poll is news: its first sight with restarts counts from zero (the
// monitor used to need a sight with the old count, and missed it).
func TestMonitorReportsARestartBeforeItsFirstSight(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
p: {cmd: p}
`)
	m := local(t, conn)
	got := make(chan Event, 4)
	unsub := e.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Restarted }, func(ev Event) { got <- ev })
	defer unsub()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	// Polls only when the machine rings: the test decides when.
	go e.Monitor(ctx, time.Hour)
	// Once the first poll is done, p is known, without a window.
	executortest.Eventually(t, "the monitor's first poll", func() bool { _, ok := e.Watched(time.Hour); return ok })
	if _, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: "p", Script: "p", Marks: executor.Marks{Managed: true, Started: 1}}); err != nil {
		t.Fatal(err)
	}
	m.Restarted("p", 7)
	m.Ring()
	select {
	case ev := <-got:
		if ev.Process != "p" || ev.Restarts != 1 || ev.ExitCode == nil || *ev.ExitCode != 7 {
			t.Fatalf("event %+v, want p restarted once after exit 7", ev)
		}
	case <-time.After(executortest.Patience):
		t.Fatal("no restarted event for p")
	}
}

// A run that began and ended between two polls (a start of a DEAD process
// that crashed at once) ended: its exit is news. The monitor used to
// report only exits of runs it had seen alive, so a script's alert for a
// crash loop missed every crash after the first.
func TestMonitorReportsARunThatEndedBetweenPolls(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
p: {cmd: p}
`)
	m := local(t, conn)
	got := make(chan Event, 4)
	unsub := e.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Exited }, func(ev Event) { got <- ev })
	defer unsub()
	w, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: "p", Script: "p", Marks: executor.Marks{Managed: true, Started: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	// Polls only when the machine rings: the test decides when.
	go e.Monitor(ctx, time.Hour)
	executortest.Eventually(t, "the monitor's first poll", func() bool { _, ok := e.Watched(time.Hour); return ok })
	expect := func(code int) {
		t.Helper()
		select {
		case ev := <-got:
			if ev.Process != "p" || ev.ExitCode == nil || *ev.ExitCode != code {
				t.Fatalf("event %+v, want p exited with %d", ev, code)
			}
		case <-time.After(executortest.Patience):
			t.Fatalf("no exited event for p's exit %d", code)
		}
	}
	m.Exit("p", 3)
	m.Ring()
	expect(3)
	// Respawned and dead again before the next poll.
	if _, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: "p", Script: "p", Replace: w.ID, Marks: executor.Marks{Managed: true, Started: 2}}); err != nil {
		t.Fatal(err)
	}
	m.Exit("p", 4)
	m.Ring()
	expect(4)
}

// Issue 15, bug 2: when a machine is lost, each of its processes gets a
// state event (UNAVAILABLE, with the reason) besides host_lost, so no view
// keeps showing it READY; when it is back, its real state follows.
func TestMonitorTellsEachProcessOfALostMachine(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
far: {cmd: far, machine: armpc}
near: {cmd: near}
`)
	if err := e.Start(ctxT(t), []string{"far", "near"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Event, 16)
	unsub := e.Bus().Subscribe(func(ev Event) bool {
		return ev.Kind == StateChanged || ev.Kind == HostLost || ev.Kind == HostBack
	}, func(ev Event) { got <- ev })
	defer unsub()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	go e.Monitor(ctx, 20*time.Millisecond)
	executortest.Eventually(t, "the monitor's first poll", func() bool { _, ok := e.Watched(time.Hour); return ok })
	next := func(what string, match func(Event) bool) Event {
		t.Helper()
		for {
			select {
			case ev := <-got:
				if match(ev) {
					return ev
				}
			case <-time.After(executortest.Patience):
				t.Fatalf("no %s", what)
			}
		}
	}
	conn.SetDown("armpc", true)
	ev := next("far UNAVAILABLE", func(ev Event) bool { return ev.Kind == StateChanged && ev.Process == "far" })
	if ev.State != StateUnavailable || !strings.Contains(ev.Message, "connection refused") {
		t.Errorf("far's state event: %+v", ev)
	}
	next("host_lost", func(ev Event) bool { return ev.Kind == HostLost && ev.Machine == "armpc" })
	conn.SetDown("armpc", false)
	ev = next("far's real state", func(ev Event) bool { return ev.Kind == StateChanged && ev.Process == "far" })
	if ev.State != StateReady {
		t.Errorf("far back: %+v", ev)
	}
	next("host_back", func(ev Event) bool { return ev.Kind == HostBack && ev.Machine == "armpc" })
}

// pollCounter counts an engine's snapshots of its machines (its monitor's
// polls).
type pollCounter struct {
	executor.Connector
	n atomic.Int64
}

type countedMachine struct {
	inner
	n *atomic.Int64
}

// inner names the embedded machine (a field named Machine would hide the
// interface's Machine method).
type inner = executor.Machine

func (c *pollCounter) Machine(ctx context.Context, name string) (executor.Machine, error) {
	m, err := c.Connector.Machine(ctx, name)
	if err != nil {
		return nil, err
	}
	return countedMachine{m, &c.n}, nil
}

func (m countedMachine) Snapshot(ctx context.Context) (executor.Snapshot, error) {
	defer m.n.Add(1)
	return m.inner.Snapshot(ctx)
}

// Issue 13, bug 8: two observers (serve and a script) each report one
// exit; their events carry the same key, so a receiver keeps one alert,
// and the next run's exit has another key.
func TestObserversAgreeOnAnExitsKey(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
core: {cmd: core}
`)
	pc := &pollCounter{Connector: conn}
	other := New(Options{Config: e.Config(), Connector: pc})
	m := local(t, conn)
	var keys []string
	for run := 0; run < 2; run++ {
		if err := e.Start(ctxT(t), []string{"core"}, config.Request{}); err != nil {
			t.Fatal(err)
		}
		a, b := make(chan Event, 4), make(chan Event, 4)
		ua := e.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Exited }, func(ev Event) { a <- ev })
		ub := other.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Exited }, func(ev Event) { b <- ev })
		ctx, cancel := context.WithCancel(ctxT(t))
		done := make(chan struct{}, 2)
		go func() { e.Monitor(ctx, 10*time.Millisecond); done <- struct{}{} }()
		before := pc.n.Load()
		go func() { other.Monitor(ctx, 10*time.Millisecond); done <- struct{}{} }()
		// The other observer saw it alive (it did not start it: a run it
		// first sees dead is not news to it).
		deadline := time.Now().Add(time.Minute)
		for pc.n.Load() < before+2 {
			if time.Now().After(deadline) {
				t.Fatal("the second monitor did not poll")
			}
			time.Sleep(5 * time.Millisecond)
		}
		m.Exit("core", 3)
		ea, eb := <-a, <-b
		cancel()
		<-done
		<-done
		ua()
		ub()
		if ea.Key == "" || ea.Key != eb.Key {
			t.Fatalf("run %d: keys %q and %q, want one non-empty key", run, ea.Key, eb.Key)
		}
		keys = append(keys, ea.Key)
		if err := e.Kill(ctxT(t), []string{"core"}, false, KillOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if keys[0] == keys[1] {
		t.Errorf("two runs' exits share the key %q", keys[0])
	}
}

// A run remembers what it was started with: Status compares its command
// with what the config renders now for those variants and params, so a
// config edit (or a variant's new command) reads as "restart to apply"
// and a run started with variants does not.
func TestStatusTellsARunTheConfigWouldChange(t *testing.T) {
	const before = `
context: {session: s, params: {rate: "10"}}
cam: {cmd: "cam --rate {rate}", variants: {sim: {cmd: "{cmd} --sim"}}}
other: {cmd: other}
`
	e, conn, _ := newTestEngine(t, before)
	ctx := ctxT(t)
	req := config.Request{Variants: []string{"sim"}, Params: map[string]string{"rate": "20"}}
	if err := e.Start(ctx, []string{"cam"}, req); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, []string{"other"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	changed := func(e *Engine) map[string]Status {
		t.Helper()
		sts, err := e.Status(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Status{}
		for _, st := range sts {
			out[st.Process] = st
		}
		return out
	}
	got := changed(e)
	if got["cam"].ConfigChanged || got["other"].ConfigChanged {
		t.Fatalf("an unchanged config reads as changed: %+v", got)
	}
	if r := got["cam"].Request; strings.Join(r.Variants, ",") != "sim" || r.Params["rate"] != "20" {
		t.Fatalf("cam's request is not remembered: %+v", r)
	}
	// The same robot seen through an edited config: cam's variant got
	// another command; other is untouched.
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(before, "--sim", "--simulated", 1)))
	if err != nil {
		t.Fatal(err)
	}
	edited := New(Options{Config: cfg, Connector: conn})
	got = changed(edited)
	if !got["cam"].ConfigChanged || got["other"].ConfigChanged {
		t.Fatalf("after the edit: cam changed=%v other changed=%v", got["cam"].ConfigChanged, got["other"].ConfigChanged)
	}
	// Restarting with the run's request applies the edit.
	if err := edited.Restart(ctx, "cam", got["cam"].Request, KillOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := changed(edited)["cam"]; st.ConfigChanged || st.State != StateRunning && st.State != StateReady {
		t.Fatalf("after the restart: %+v", st)
	}
	if n := local(t, conn).Spawned("cam"); n != 2 {
		t.Fatalf("cam spawned %d times, want 2", n)
	}
}

// monitoredExit is the set-up of the two tests below: a running process
// p, and the Exited events published. exits settles the monitor first.
func monitoredExit(t *testing.T) (e *Engine, m *fake.Machine, exits func() []Event) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
p: {cmd: p}
`)
	m = local(t, conn)
	if _, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: "p", Script: "p", Marks: executor.Marks{Managed: true, Started: 1}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []Event
	t.Cleanup(e.Bus().Subscribe(func(ev Event) bool { return ev.Kind == Exited }, func(ev Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	return e, m, func() []Event {
		e.MonitorSettle()
		e.Bus().Flush()
		mu.Lock()
		defer mu.Unlock()
		return append([]Event(nil), got...)
	}
}

// A command interrupted right after it stopped something (Ctrl-C just
// after a kill --all): its monitor looks once more as it ends, and
// MonitorSettle waits for that look, so the exit is an event (for the
// handlers, or counted as undelivered) and never lost (CI run 67).
func TestAnInterruptedMonitorLooksOnceMore(t *testing.T) {
	e, m, exits := monitoredExit(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	// Polls only when rung (an hour apart otherwise): the exit below is
	// seen by no poll but the last.
	e.MonitorOnce(ctx, time.Hour)
	m.Exit("p", 130)
	cancel() // Ctrl-C
	if got := exits(); len(got) != 1 || got[0].Process != "p" {
		t.Fatalf("exits published by the interrupted monitor: %+v", got)
	}
}

// The Ctrl-C may come while the monitor is looking: that look fails (its
// context ended), and the last look is still taken, so the exit is an
// event. The monitor returned at the failed look, and the exits of a
// kill --all of 30 were neither delivered nor counted (CI run 148: 18 of
// 30).
func TestAMonitorInterruptedMidLookLooksOnceMore(t *testing.T) {
	e, m, exits := monitoredExit(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	e.MonitorOnce(ctx, time.Hour)
	m.Exit("p", 130)
	// The next look is interrupted: Ctrl-C as it begins.
	var once sync.Once
	m.BeforeSnapshot = func() { once.Do(cancel) }
	if got := exits(); len(got) != 1 || got[0].Process != "p" {
		t.Fatalf("exits published by the monitor interrupted mid-look: %+v", got)
	}
}

// A window of an older launcher has no request mark: it may run with
// variants, so its command is not judged (a "restart to apply" without
// them would drop them); a window that says it had none is.
func TestStatusDoesNotJudgeARunOfAnOlderLauncher(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
old: {cmd: "new command"}
said: {cmd: "new command"}
`)
	m := local(t, conn)
	for name, request := range map[string]string{"old": "", "said": "{}"} {
		if _, err := m.Spawn(ctxT(t), executor.SpawnSpec{Session: "s", Name: name, Script: "old command",
			Marks: executor.Marks{Managed: true, Name: name, Hash: "hash-of-an-old-command", Started: 1, Request: request}}); err != nil {
			t.Fatal(err)
		}
	}
	sts, err := e.Status(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if want := st.Process == "said"; st.ConfigChanged != want {
			t.Errorf("%s: config_changed %v, want %v", st.Process, st.ConfigChanged, want)
		}
	}
}
