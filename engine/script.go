package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// What scripts (and later the supervisor and the HTTP API) need beyond the
// CLI's operations: waiting for readiness, running a command where a
// process runs, reading a run's log, and noticing changes nobody asked for.

// WaitReady waits until name is READY. It returns the state that ended the
// wait otherwise: a process that is not running (STOPPED, DEAD) or a
// conflict ends it at once.
func (e *Engine) WaitReady(ctx context.Context, name string) (State, error) {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return "", err
	}
	pl := newPoller(0)
	pl.max = 250 * time.Millisecond
	for {
		sts, err := e.WindowStates(ctx, []string{p.Name})
		if err != nil {
			return "", err
		}
		switch st := sts[0].State; st {
		case StateReady:
			return st, nil
		case StateStopped, StateDead, StateConflict:
			return st, nil
		}
		if err := sleepCtx(ctx, pl.next()); err != nil {
			return "", err
		}
	}
}

// ExecTarget runs script to completion where target runs: target is a
// process name (then on its machine, inside its container if it has one)
// or a machine string.
func (e *Engine) ExecTarget(ctx context.Context, target, script string, timeout time.Duration) (executor.Result, error) {
	machine, docker := target, ""
	var env []executor.EnvVar
	cwd := ""
	if p := e.conf().Process(target); p != nil {
		machine, docker, cwd = p.Machine, p.Docker, p.Cwd
		env = toExecEnv(p.Env)
	} else if err := config.CheckMachine(target); err != nil {
		return executor.Result{}, fmt.Errorf("%q is neither a process of the config nor a machine: %w", target, err)
	}
	m, _, err := e.machine(ctx, machine)
	if err != nil {
		return executor.Result{}, err
	}
	if docker != "" {
		if err := m.CheckContainer(ctx, docker); err != nil {
			return executor.Result{}, err
		}
	}
	return m.Exec(ctx, executor.ExecSpec{Script: script, Docker: docker, Env: env, Cwd: cwd, Timeout: timeout})
}

// RunLog returns what the current (or last) run of name wrote to its log,
// from the start of that run: at most max bytes, the newest ones.
func (e *Engine) RunLog(ctx context.Context, name string, max int) (string, error) {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return "", err
	}
	m, _, err := e.machine(ctx, p.Machine)
	if err != nil {
		return "", err
	}
	path, err := m.LogPath(ctx, p.Session, p.Name)
	if err != nil {
		return "", err
	}
	_, lines, err := m.LogHead(ctx, path, 2000)
	if err != nil {
		return "", err
	}
	// The run starts at its last "[launcher] starting" line.
	start := 0
	for i := len(lines) - 1; i >= 0; i-- {
		if executor.IsStartLine(lines[i], "") {
			start = i + 1
			break
		}
	}
	var out []byte
	for _, l := range lines[start:] {
		if executor.IsLauncherLine(l) {
			continue
		}
		out = append(out, executor.StripTimestamp(l)...)
		out = append(out, '\n')
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return string(out), nil
}

// Monitor watches every process of the config until ctx ends and
// publishes what changes without an operation of this engine: a process
// that exits (Exited, with its exit code; Message "stopped on request" when
// a stop asked for it), a restart by a restart policy (Restarted), a
// machine that becomes unreachable (HostLost) or reachable again
// (HostBack), and every change of a process's state whoever made it
// (StateChanged: another launcher's run shows up too). It polls every
// `every` (one window listing per machine), so a change reaches
// subscribers within that time. A process this engine started counts as
// running at the first poll, so an exit that came before the monitor began
// is reported too.
func (e *Engine) Monitor(ctx context.Context, every time.Duration) {
	type seen struct {
		alive    bool
		window   string
		started  int64 // the run in the window (a respawn keeps the window)
		state    State
		restarts int
	}
	last := map[string]seen{}
	e.mu.Lock()
	for name, id := range e.spawned {
		last[name] = seen{alive: true, window: id}
	}
	e.mu.Unlock()
	lost := map[string]bool{}
	em := emitter{bus: e.bus}
	first := true
	// Machines that ring when a launcher changes a window wake the loop at
	// once (then once more shortly after, for what follows the change: a
	// signalled process ending); polling every `every` covers the rest.
	wake := make(chan struct{}, 1)
	listening := map[executor.Machine]bool{}
	var lmu sync.Mutex
	listen := func() {
		for _, name := range e.machineNames() {
			m, _, err := e.machine(ctx, name)
			n, ok := m.(executor.Notifier)
			lmu.Lock()
			if err != nil || !ok || listening[m] {
				lmu.Unlock()
				continue
			}
			listening[m] = true
			lmu.Unlock()
			go func() {
				defer func() { lmu.Lock(); delete(listening, m); lmu.Unlock() }()
				for n.WaitChange(ctx) == nil {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
				// No tmux server there (yet), or the link dropped: listen
				// again later, not at every poll (a process, or an SSH
				// session, each time); the polls cover the gap.
				_ = sleepCtx(ctx, 5*time.Second)
			}()
		}
	}
	next := every
	e.mu.Lock()
	settle := e.settle // nil (never ready) for a monitor not started by MonitorOnce
	ended := e.monitorEnded
	e.mu.Unlock()
	if ended != nil {
		defer close(ended)
	}
	var settling []chan struct{} // MonitorSettle's callers, told after the next poll
	// final: ctx ended and this is the last look. The monitor of a command
	// (MonitorOnce's) looks once more when its command is interrupted, so
	// the exits the command caused are events its handlers get or that
	// are counted as undelivered, never neither (CI run 67: a Ctrl-C right
	// after a kill --all of 30, and 2 exits were not seen).
	final := false
	look := ctx // the context of the polls; the last one outlives ctx
	for {
		waiting := settling
		settling = nil
		taken := time.Now()
		sts, err := e.WindowStates(look, nil)
		if err != nil {
			// Machines are reported one by one (UNAVAILABLE rows); an
			// error here ends only with ctx. A Ctrl-C in the middle of a
			// look is one: the last look is still taken (CI run 148: the
			// monitor returned here, and 18 exits of a kill --all of 30
			// were neither delivered nor counted).
			e.monitorBaseline() // no baseline to wait for
			if final {
				return
			}
			settling = append(settling, waiting...) // told after the next look
			if ctx.Err() != nil || sleepCtx(ctx, every) != nil {
				if settle == nil {
					return
				}
				final, look = true, lastLookContext(ctx)
			}
			continue
		}
		e.watched.Store(&watchedRows{rows: sts, taken: taken})
		now := time.Now()
		down := map[string]string{}
		for _, st := range sts {
			prev, known := last[st.Process]
			if st.State == StateUnavailable {
				down[st.Machine] = st.Error
				if prev.state != st.State {
					// Every process of a lost machine says so (with the
					// reason), so no view keeps showing it READY; what it
					// was seen doing is kept for when the machine is back.
					if !first {
						em.publish(Event{Time: now, Kind: StateChanged, Process: st.Process, Machine: st.Machine, Session: st.Session,
							State: st.State, Message: st.Error})
					}
					prev.state = st.State
					last[st.Process] = prev
				}
				continue
			}
			alive := st.Window != nil && !st.Window.Dead
			id := ""
			if st.Window != nil {
				id = st.Window.ID
			}
			var started int64
			if st.Window != nil {
				started = st.Window.Marks.Started
			}
			newRun := prev.window != id || prev.started != started
			switch {
			case known && prev.alive && !alive && st.Window != nil && prev.window == id && !st.Window.Marks.OneShot,
				// A run that began and ended between two polls (a
				// respawn that crashed at once) ended too.
				known && !prev.alive && !alive && st.Window != nil && newRun && started != 0 && !st.Window.Marks.OneShot:
				ev := Event{Time: now, Kind: Exited, Process: st.Process, Machine: st.Machine, Session: st.Session, Message: "exited", ExitCode: st.ExitCode}
				if op, ok := parseOp(st.Window.Marks.Op); ok && op.Kind == "stopping" {
					ev.Message, ev.Expected = "stopped on request", true
				} else if gu := st.Window.Marks.Restarts.GaveUp; gu != "" {
					// The restart policy gave up: say why and after how many
					// restarts, not a bare "exited".
					ev.Message, ev.Restarts = "restart policy: "+gu, st.Window.Marks.Restarts.Count
				}
				ev.Key = runKey(ev, st.Window.Marks.Tag, st.Window.Marks.Started)
				em.publish(ev)
			case known && prev.alive && st.Window == nil && prev.window != "" && !isOneShot(e, st.Process):
				// The window is gone between two polls: a stop (by any
				// launcher) that closed it after the process ended.
				em.publish(Event{Time: now, Kind: Exited, Process: st.Process, Machine: st.Machine, Session: st.Session,
					Message: "stopped (its window was closed)", Expected: true})
			}
			// A run first seen already restarted (it began and restarted
			// between two polls) counts from zero.
			before := prev.restarts
			if newRun {
				before = 0
			}
			if known && id != "" && st.Restarts > before {
				ev := Event{Time: now, Kind: Restarted, Process: st.Process, Machine: st.Machine, Session: st.Session,
					Message: fmt.Sprintf("restart %d after exit code %d", st.Restarts, derefInt(st.LastExit)), ExitCode: st.LastExit, Restarts: st.Restarts}
				ev.Key = runKey(ev, st.Window.Marks.Tag, st.Window.Marks.Started) + fmt.Sprintf("/%d", st.Restarts)
				em.publish(ev)
			}
			if !first && prev.state != st.State {
				em.publish(Event{Time: now, Kind: StateChanged, Process: st.Process, Machine: st.Machine, Session: st.Session,
					State: st.State, Message: st.Error, ExitCode: st.ExitCode, PID: derefInt(st.PID), Restarts: st.Restarts})
			}
			last[st.Process] = seen{alive: alive, window: id, started: started, state: st.State, restarts: st.Restarts}
		}
		if first {
			e.monitorBaseline()
		}
		first = false
		for m, why := range down {
			if !lost[m] {
				lost[m] = true
				em.publish(Event{Time: now, Kind: HostLost, Machine: m, Message: why})
			}
		}
		for m := range lost {
			if _, still := down[m]; !still {
				delete(lost, m)
				em.publish(Event{Time: now, Kind: HostBack, Machine: m, Message: "reachable again"})
			}
		}
		for _, d := range waiting {
			close(d)
		}
		if final {
			return
		}
		listen()
		select {
		case <-ctx.Done():
			if settle == nil {
				return
			}
			final = true
			// Bounded: a Ctrl-C waits for it, and an unreachable machine
			// must not hold the exit for long.
			look = lastLookContext(ctx)
		case d := <-settle:
			settling = append(settling, d)
		case <-wake:
			next = 25 * time.Millisecond
		case <-time.After(next):
			next = every
		}
	}
}

// finalLookTimeout bounds the last look of an interrupted command's monitor.
const finalLookTimeout = 2 * time.Second

// lastLookContext is ctx without its end, ended finalLookTimeout from now.
func lastLookContext(ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalLookTimeout)
	time.AfterFunc(finalLookTimeout, cancel)
	return c
}

// MonitorSettle makes the monitor MonitorOnce started look once more and
// returns when what it saw is published: at the end of a command, the
// exits its operation caused reach their handlers before they drain (a
// kill that ended between two polls said nothing). A monitor whose
// context ended (Ctrl-C) takes that look as it ends: MonitorSettle then
// waits for its end. Without a monitor it returns at once; a look is
// waited for at most ListTimeout.
func (e *Engine) MonitorSettle() {
	e.mu.Lock()
	settle, ended := e.settle, e.monitorEnded
	e.mu.Unlock()
	if settle == nil {
		return
	}
	d := make(chan struct{})
	select {
	case settle <- d:
	case <-ended:
		return
	case <-time.After(ListTimeout):
		return
	}
	select {
	case <-d:
	case <-ended:
	case <-time.After(ListTimeout):
	}
}

// Watched returns the monitor's last view of every process (window states:
// no ORPHANED scan) when it is at most maxAge old and was taken after the
// last event and the end of every operation of this engine; ok is false
// otherwise (ask Status). A server answers lists from it without listing
// the machines. Like Status, it compares each run with the config.
func (e *Engine) Watched(maxAge time.Duration) (rows []Status, ok bool) {
	w := e.watched.Load()
	if w == nil || time.Since(w.taken) > maxAge || w.taken.UnixNano() <= e.lastOwn.Load() {
		return nil, false
	}
	// A process added or removed since (a custom one) makes it stale.
	cfg := e.conf()
	if len(w.rows) != len(cfg.Processes) {
		return nil, false
	}
	rows = append([]Status(nil), w.rows...)
	for i := range rows {
		p := cfg.Processes[i]
		if p.Name != rows[i].Process {
			return nil, false
		}
		e.compareConfig(&rows[i], p)
	}
	return rows, true
}

// machineNames are the machines of the config, each once.
func (e *Engine) machineNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range e.conf().Processes {
		if !seen[p.Machine] {
			seen[p.Machine] = true
			out = append(out, p.Machine)
		}
	}
	return out
}

// isOneShot reports whether name is a one-shot (whose windows close when
// they succeed: not an exit worth an event).
func isOneShot(e *Engine, name string) bool {
	p := e.conf().Process(name)
	return p == nil || !p.Persistent
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// Supervise runs the monitor (see Monitor) and applies what a watching
// launcher adds to the restart policies that live in the panes: a process
// a policy restarted gets its ready check again (RecheckReady), and with
// `restart_dependants: true` its running dependants are restarted too. It
// returns when ctx ends.
func (e *Engine) Supervise(ctx context.Context, every time.Duration) {
	var mu sync.Mutex
	checking := map[string]bool{}
	unsub := e.bus.Subscribe(func(ev Event) bool { return ev.Kind == Restarted }, func(ev Event) {
		p := e.conf().Process(ev.Process)
		if p == nil {
			return
		}
		mu.Lock()
		if !checking[p.Name] {
			// Its ready check runs again (one at a time per process), so
			// the restarted process is READY again when it is.
			checking[p.Name] = true
			go func() {
				defer func() { mu.Lock(); delete(checking, p.Name); mu.Unlock() }()
				_ = e.RecheckReady(ctx, p.Name)
			}()
		}
		mu.Unlock()
		if !p.Restart.Dependants {
			return
		}
		if err := e.RestartDependants(ctx, p.Name); err != nil && ctx.Err() == nil {
			e.bus.Publish(Event{Kind: Failed, Process: p.Name, Machine: p.Machine, Session: p.Session,
				Message: "restarting its dependants: " + err.Error()})
		}
	})
	defer unsub()
	e.MonitorOnce(ctx, every)
	<-ctx.Done()
}

// MonitorOnce makes sure one Monitor runs while ctx lives (scripts ask for
// it when they subscribe to exits), and returns once it has seen what
// runs: an exit that an operation causes right after (a fast kill of 30
// processes) is one it reports, not one that happened before it looked
// (CI run 47: 30 exits, no alert and none counted).
func (e *Engine) MonitorOnce(ctx context.Context, every time.Duration) {
	e.monitorOnce.Do(func() {
		e.mu.Lock()
		e.baseline = make(chan struct{})
		e.settle = make(chan chan struct{})
		e.monitorEnded = make(chan struct{})
		e.mu.Unlock()
		go e.Monitor(ctx, every)
	})
	select {
	case <-e.baseline:
	case <-ctx.Done():
	case <-time.After(ListTimeout): // a machine that does not answer is reported by the monitor
	}
}

// monitorBaseline tells MonitorOnce's callers that the monitor has looked.
func (e *Engine) monitorBaseline() {
	e.baselineOnce.Do(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.baseline != nil {
			close(e.baseline)
		}
	})
}

// LogTail returns the last n lines of name's log (timestamped, as
// written; launcher's own lines included), for a viewer that then follows
// the log.
func (e *Engine) LogTail(ctx context.Context, name string, n int) ([]string, error) {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return nil, err
	}
	m, _, err := e.machine(ctx, p.Machine)
	if err != nil {
		return nil, err
	}
	path, err := m.LogPath(ctx, p.Session, p.Name)
	if err != nil {
		return nil, err
	}
	_, lines, err := m.LogHead(ctx, path, n)
	return lines, err
}

// RecheckReady runs name's ready check again on its live window when the
// window is not marked ready (a restart policy restarted it and dropped
// the mark), marks it ready when the check passes and publishes Ready.
// It never touches the window's op mark: a start or a stop under way (any
// op mark) ends it, as does a window that dies, waits to restart, or runs
// another command than the config's defaults render (its check could
// render differently). It gives up after ready_timeout (default 2 min).
func (e *Engine) RecheckReady(ctx context.Context, name string) error {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return err
	}
	plan, err := e.conf().Resolve([]string{name}, config.Request{})
	if err != nil {
		return err
	}
	var r *config.Resolved
	for _, x := range plan.Processes {
		if x.Name == name {
			r = x
		}
	}
	if r == nil || r.ReadyCheck == "" && !e.hasCustom(r) {
		return nil
	}
	timeout := time.Duration(r.ReadyTimeout)
	if timeout <= 0 {
		timeout = DefaultCustomReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	em := e.newEmitter(ctx)
	// Its last changes (a ready mark follows its event) are older than
	// the end of the operation: Watched views must be newer.
	defer em.touch()
	o, err := e.newProcOp(ctx, em, p, r, 0)
	if err != nil {
		return err
	}
	offset := int64(-1)
	pl := newPoller(time.Duration(r.ReadyPeriod))
	for {
		snap, err := o.snaps.get(ctx, time.Now())
		if err != nil {
			return err
		}
		w, err := findWindow(snap, p)
		if err != nil || w == nil || w.Dead || w.Marks.Ready || w.Marks.Op != "" || w.Marks.Hash != r.Hash || w.Marks.Restarts.BackoffUntil > 0 {
			return err
		}
		if offset < 0 {
			// The output of the latest restart starts at its
			// "[launcher] restarting … (…, run TAG)" line.
			offset = e.runOffset(ctx, o.m, *w)
		}
		ok, _, raised := e.pollChecks(ctx, o, *w, offset)
		if raised != nil {
			return failf(em, p, 0, "%v; it keeps running", raised)
		}
		if ok {
			if err := o.m.SetMarks(ctx, w.ID, executor.SetReady(true)); err != nil {
				return err
			}
			em.publish(Event{Kind: Ready, Process: p.Name, Machine: p.Machine, Session: p.Session, Message: "ready again after a restart", PID: w.PanePID})
			return nil
		}
		if err := sleepCtx(ctx, pl.next()); err != nil {
			return nil // not ready within its timeout: it stays RUNNING
		}
	}
}

// runKey names what an event of the monitor is about — this kind of
// event, of this run of the process — the same in every launcher that
// watches the robot (serve and a script both post an alert for one exit:
// the receiver keeps one per key).
func runKey(ev Event, tag string, started int64) string {
	return fmt.Sprintf("%s/%s/%s/%s/%s-%d", ev.Kind, ev.Machine, ev.Session, ev.Process, tag, started)
}
