package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// task is one node of an operation: it runs once, however many dependants
// wait for it (a diamond runs its base once).
type task struct {
	done chan struct{}
	err  error
}

// graph runs the tasks of one operation.
type graph struct {
	mu    sync.Mutex
	tasks map[string]*task
	run   func(ctx context.Context, name string, level int) error
}

func (g *graph) get(ctx context.Context, name string, level int) *task {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.tasks[name]; t != nil {
		return t
	}
	t := &task{done: make(chan struct{})}
	g.tasks[name] = t
	go func() {
		defer close(t.done)
		t.err = g.run(ctx, name, level)
	}()
	return t
}

// all runs names concurrently and waits for every one.
func (g *graph) all(ctx context.Context, names []string, level int) []error {
	ts := make([]*task, len(names))
	for i, n := range names {
		ts[i] = g.get(ctx, n, level)
	}
	errs := make([]error, len(names))
	for i, t := range ts {
		<-t.done
		errs[i] = t.err
	}
	return errs
}

// Start brings up the named processes and their dependencies: every process
// starts once its dependencies are ready, independent branches concurrently.
// It returns when all are ready, or with the first failure (a *config.Error
// for bad input, a *ProcessError when a process failed). Cancelling ctx stops
// waiting and leaves whatever started running.
func (e *Engine) Start(ctx context.Context, names []string, req config.Request) error {
	plan, err := e.conf().Resolve(names, req)
	if err != nil {
		return err
	}
	return e.StartPlan(ctx, plan)
}

// StartOptions tune a start (scripts use them).
type StartOptions struct {
	// NoDeps starts only the plan's roots: their dependencies must be up
	// already (a dependency that is not fails the start).
	NoDeps bool
	// Done names one-shots that already succeeded (in this script): they
	// are not run again.
	Done map[string]bool
	// checked: the caller (a restart) checked the plan already.
	checked bool
}

// StartPlan runs a resolved plan (see Start).
func (e *Engine) StartPlan(ctx context.Context, plan *config.Plan) error {
	return e.StartPlanWith(ctx, plan, StartOptions{})
}

// StartPlanWith runs a resolved plan with options.
func (e *Engine) StartPlanWith(ctx context.Context, plan *config.Plan, opts StartOptions) error {
	ctx = withPlanStart(ctx)
	em := e.newEmitter(ctx)
	// The scan for processes that outlived their window (read only, like
	// the check) runs beside the check instead of after it.
	// They end with the operation: cancelled, and waited for (a scan left
	// running read the machines' state after Start had returned: a race
	// the race detector saw in CI run 102).
	sctx, stopScans := context.WithCancel(ctx)
	var scanning sync.WaitGroup
	defer func() {
		stopScans()
		scanning.Wait()
	}()
	seen := map[string]bool{}
	for _, r := range plan.Processes {
		if seen[r.Machine] {
			continue
		}
		seen[r.Machine] = true
		scanning.Add(1)
		go func(machine string) {
			defer scanning.Done()
			if m, _, err := e.machine(sctx, machine); err == nil {
				_, _ = em.scans.get(sctx, m)
			}
		}(r.Machine)
	}
	if !opts.checked {
		if err := e.CheckPlan(ctx, PlanStart(e.conf(), plan), strings.Join(plan.Roots, " "), containersOf(plan)); err != nil {
			return err
		}
	}
	// Its last changes (a ready mark follows its event) are older than
	// the end of the operation: Watched views must be newer.
	defer em.touch()
	g := &graph{tasks: map[string]*task{}}
	g.run = func(ctx context.Context, name string, level int) error {
		r := plan.Get(name)
		if !r.Persistent && opts.Done[name] {
			em.emit(Info, r.Process, level, "one-shot already done (not run again)")
			return nil
		}
		connecting(em, r.Process, level)
		// A listing that started after this point serves the looks below
		// (dependencies up, its own window): nothing of this task happened
		// since, and a ready mark's listing then costs no round trip of its
		// own. The look after its start takes one newer than the spawn.
		after := em.firstLook(time.Time{})
		if len(r.Depends) > 0 && !opts.NoDeps {
			em.emit(Waiting, r.Process, level, "depends on %s", strings.Join(r.Depends, ", "))
			errs := g.all(ctx, r.Depends, level+1)
			for i, err := range errs {
				if err == nil {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if dl, ok := waitDeadline(ctx); ok && !time.Now().Before(dl) && errors.Is(err, context.DeadlineExceeded) {
					msg := fmt.Sprintf("not started: the operation's timeout ran out while waiting for %s", r.Depends[i])
					em.emit(Failed, r.Process, level, "%s", msg)
					return &ProcessError{Process: name, Msg: msg, Cause: err}
				}
				em.emit(Failed, r.Process, level, "not started: dependency %s failed", r.Depends[i])
				return &ProcessError{Process: name, Msg: fmt.Sprintf("not started: dependency %s failed", r.Depends[i]), Cause: err}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A stop wins over a start: a dependency stopped (or being
		// stopped) since it was ready fails this start instead of leaving
		// a dependant running on nothing.
		if err := e.depsStillUp(ctx, r.Process, after); err != nil {
			return failf(em, r.Process, level, "not started: %v", err)
		}
		spawned := time.Now() // startOne moves it to its spawn
		err := e.startOne(ctx, em, r, level, after, &spawned)
		if err == nil && len(r.Depends) > 0 {
			if derr := e.depsStillUp(ctx, r.Process, spawned); derr != nil {
				// The stop came while this one started: undo our start.
				_ = e.stopOne(ctx, em, r.Process, level, false)
				return failf(em, r.Process, level, "stopped again: %v", derr)
			}
		}
		return err
	}
	errs := g.all(ctx, plan.Roots, 0)
	return errors.Join(errs...)
}

// depsStillUp fails when a persistent dependency of p is no longer running
// (it was stopped, or a stop of it is under way).
func (e *Engine) depsStillUp(ctx context.Context, p *config.Process, after time.Time) error {
	var deps []string
	for _, d := range p.Depends {
		if q := e.conf().Process(d); q != nil && q.Persistent {
			deps = append(deps, d)
			// A listing older than this engine's last start of the
			// dependency would not show its window (one ready at its
			// spawn left no listing behind).
			if t := e.lock(q.Machine, q.Session, q.Name).lastLetGo(); t.After(after) {
				after = t
			}
		}
	}
	if len(deps) == 0 {
		return nil
	}
	sts, err := e.status(ctx, deps, false, after)
	if err != nil {
		return err
	}
	for _, st := range sts {
		switch st.State {
		case StateReady, StateRunning, StateStarting, StateUnavailable:
		default:
			return fmt.Errorf("dependency %s is %s (a stop wins over a start; run again to bring it up)", st.Process, st.State)
		}
	}
	return nil
}

// maxRaces bounds how often a start looks again after losing a race for
// its window.
const maxRaces = 8

func newTag() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// failf emits a Failed event and returns the matching ProcessError.
func failf(em emitter, p *config.Process, level int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	em.emit(Failed, p, level, "%s", msg)
	return &ProcessError{Process: p.Name, Msg: msg}
}

// startOne starts (or finds running) one process and waits until it is
// ready, or until a one-shot finished.
func (e *Engine) startOne(ctx context.Context, em emitter, r *config.Resolved, level int, after time.Time, spawned *time.Time) error {
	o, err := e.newProcOp(ctx, em, r.Process, r, level)
	if err != nil {
		return err
	}
	p, m, snaps := o.p, o.m, o.snaps
	lk := &procLock{mu: e.lock(p.Machine, p.Session, p.Name)}
	lk.lock()
	defer lk.unlock()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			after = time.Now() // a race lost: look at the server as it is now
		}
		if after.Before(lk.since) {
			// Another operation of this engine had it since: what it did
			// must be seen.
			after = lk.since
		}
		w, err := currentWindow(ctx, em, p, level, snaps, after)
		if err != nil {
			return err
		}
		// Times in marks, and the age of another launcher's, are in the
		// machine's clock (see executor.Snapshot.Clock).
		now := m.Clock()
		if w != nil && !w.Dead {
			return e.joinRunning(ctx, o, lk, *w, now)
		}
		// Processes of an earlier run that outlived their window would be
		// a second copy next to the new one (two drivers on the hardware).
		if tagged, err := em.scans.get(ctx, m); err == nil {
			pids, tags := orphansOf(p, w, logPathOf(ctx, m, p), tagged)
			if len(pids) > 0 {
				// A run whose window was just closed (a one-shot that
				// ended, a stop) may still be exiting: only what stays
				// counts.
				pids, tags = stillThere(ctx, m, p, w, pids, tags)
			}
			if len(pids) > 0 {
				// They may be a concurrent launcher's new window: look again.
				if cur, err := currentWindow(ctx, em, p, level, snaps, time.Now()); err == nil && cur != nil && !cur.Dead && attempt < maxRaces {
					continue
				}
				return failf(em, p, level, "not started: processes of %s still run (pids %s); `launcher kill %s` ends them", earlierRun(tags), joinInts(pids), p.Name)
			}
		}
		if r.Docker != "" {
			if err := m.CheckContainer(ctx, r.Docker); err != nil {
				return failf(em, p, level, "%v", err)
			}
		}
		em.emit(Starting, p, level, "starting")
		logPath, err := m.LogPath(ctx, p.Session, p.Name)
		if err != nil {
			return o.failed(err)
		}
		spec := executor.SpawnSpec{Session: p.Session, Name: p.Name, Script: r.Cmd, Docker: r.Docker,
			Env: toExecEnv(r.Env), Cwd: r.Cwd,
			Marks: executor.Marks{Managed: true, Op: e.owner.mark("starting", now), Hash: r.Hash, Started: now.UnixMilli(),
				Tag: newTag(), Docker: r.Docker, Log: logPath, OneShot: !p.Persistent, Request: requestMark(r.Request)}}
		spec.Rotate = executor.LogRotation{MaxSize: r.LogRotation.MaxSize, Keep: r.LogRotation.Keep}
		if w != nil {
			spec.Replace = w.ID
		}
		// A process with no ready check is ready once its window is made.
		// On a machine that batches its tmux work the ready mark goes with
		// the spawn instead of in a tmux call of its own: at 1000
		// processes those calls, each ending in a listing of every window,
		// were 14 % of a bring-up (and a round trip each over SSH). Their
		// listing looked for a death before ready, but locally it came
		// before the pane's shell had read its .bashrc: a command that
		// fails at once shows as DEAD in status and to its dependants, as
		// it did.
		_, batches := m.(executor.MarkLister)
		readyAtSpawn := batches && p.Persistent && r.ReadyCheck == "" && !e.hasCustom(r)
		if readyAtSpawn {
			spec.Marks.Op, spec.Marks.Ready, spec.Marks.ReadyAt = "", true, now.UnixMilli()
		}
		if rp := r.Restart; rp != nil {
			spec.Restart = &executor.RestartPolicy{Always: rp.Mode == config.RestartAlways, Delay: time.Duration(rp.Delay),
				MaxDelay: time.Duration(rp.MaxDelay), Max: rp.Max, Window: time.Duration(rp.Window),
				ClearReady: r.ReadyCheck != "" || r.CheckKind != "" || e.checker != nil && e.checker.HasCustom(p.Name)}
		}
		offset := int64(-1)
		if !p.Persistent || e.needsOffset(r) {
			// Output of this run starts here: one-shot output and log checks
			// read from this offset.
			if offset, _, err = logHead(ctx, m, spec.Marks.Log, 0); err != nil {
				return failf(em, p, level, "%v", err)
			}
		}
		*spawned = time.Now()
		nw, err := m.Spawn(ctx, spec)
		if errors.Is(err, executor.ErrRaced) && attempt < maxRaces {
			// Another client created the window first (the next listing
			// finds it), or the tmux server was exiting (its last session
			// just closed): look again, a little later each time.
			if err := sleepCtx(ctx, time.Duration(attempt)*20*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return o.failed(err)
		}
		lk.unlock()
		if p.Persistent {
			e.mu.Lock()
			e.spawned[p.Name] = nw.ID
			e.mu.Unlock()
		}
		em.publish(Event{Kind: Started, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level,
			Message: fmt.Sprintf("started (pid %d)", nw.PanePID), PID: nw.PanePID})
		if !p.Persistent {
			return e.awaitOneShot(ctx, o, nw, offset)
		}
		if readyAtSpawn {
			em.publish(Event{Kind: Ready, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "ready", PID: nw.PanePID})
			return nil
		}
		return e.awaitReady(ctx, o, nw, false, offset)
	}
}

// joinRunning handles a process whose window is alive: another launcher's
// stop wins; otherwise it is taken as it is (the command it runs may differ
// from the config's), its readiness checked again, and awaited.
func (e *Engine) joinRunning(ctx context.Context, o *procOp, lk *procLock, w executor.Window, now time.Time) error {
	em, r, p, level, m := o.em, o.r, o.p, o.level, o.m
	if op, ok := parseOp(w.Marks.Op); ok && op.Kind == "stopping" && op.Owner != e.owner && op.live(e.owner, now) {
		// Another launcher is stopping it, and a stop wins.
		return failf(em, p, level, "is being stopped by another launcher (a stop wins over a start; run again once it has stopped)")
	}
	if w.Marks.Hash != "" && w.Marks.Hash != r.Hash {
		em.emit(Info, p, level, "is running a different command than the config gives now; run `launcher restart %s` to apply it", p.Name)
	}
	lk.unlock()
	if !p.Persistent {
		em.emit(Info, p, level, "one-shot already running: waiting for it")
		return e.awaitOneShot(ctx, o, w, -1)
	}
	// A check that reads this run's output needs where it starts:
	// the run's start line, found by its tag, since the launcher
	// that started it may be gone.
	offset := int64(-1)
	if e.needsOffset(r) {
		offset = e.runOffset(ctx, m, w)
	}
	if w.Marks.Ready {
		// Readiness is checked again before dependants rely on it: a
		// process can stop being ready while it runs.
		checkFrom := offset
		if checkFrom < 0 && e.hasCustom(r) {
			checkFrom = 0
		}
		ok, reason, _ := e.pollChecks(ctx, o, w, checkFrom)
		if ok {
			ev := Event{Kind: Ready, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "already running", PID: w.PanePID, Already: true}
			em.publish(ev)
			return nil
		}
		em.emit(Checking, p, level, "already running, but not ready any more (%s): waiting for it", reason)
		_ = m.SetMarks(ctx, w.ID, executor.SetReady(false))
		return e.awaitReady(ctx, o, w, true, offset)
	}
	em.emit(Info, p, level, "already running, not ready yet")
	return e.awaitReady(ctx, o, w, true, offset)
}

// currentWindow lists the machine's windows now and finds p's, reporting a
// failure (unreachable machine, CONFLICT) as an event.
func currentWindow(ctx context.Context, em emitter, p *config.Process, level int, snaps *snapshots, after time.Time) (*executor.Window, error) {
	snap, err := snaps.get(ctx, after)
	if err == nil {
		var w *executor.Window
		if w, err = findWindow(snap, p); err == nil {
			return w, nil
		}
	}
	em.emit(Failed, p, level, "%v", err)
	return nil, err
}

func toExecEnv(env []config.EnvVar) []executor.EnvVar {
	out := make([]executor.EnvVar, len(env))
	for i, e := range env {
		out[i] = executor.EnvVar{Name: e.Name, Value: e.Value}
	}
	return out
}

// Poll periods: short at first so readiness is noticed within tens of
// milliseconds, backing off so a slow process costs little.
const (
	firstPeriod   = 20 * time.Millisecond
	fastPhase     = time.Second
	maxPeriod     = time.Second
	backoffFactor = 1.5
)

// poller yields the waits between polls: firstPeriod during the first
// second, then growing by backoffFactor up to max.
type poller struct {
	start  time.Time
	period time.Duration
	max    time.Duration
	fixed  bool
}

func newPoller(fixed time.Duration) *poller {
	if fixed > 0 {
		return &poller{start: time.Now(), period: fixed, max: fixed, fixed: true}
	}
	return &poller{start: time.Now(), period: firstPeriod, max: maxPeriod}
}

func (p *poller) next() time.Duration {
	d := p.period
	if !p.fixed && time.Since(p.start) > fastPhase {
		p.period = min(time.Duration(float64(p.period)*backoffFactor), p.max)
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// awaitReady polls the process's ready checks until they pass, the process
// dies, ready_timeout runs out or ctx ends. The window carries a live
// "starting" mark meanwhile; whatever happens, a failure leaves the process
// running (nothing is ever killed because a wait failed).
func (e *Engine) awaitReady(ctx context.Context, o *procOp, w executor.Window, markNeeded bool, offset int64) error {
	em, r, p, level, m, snaps := o.em, o.r, o.p, o.level, o.m, o.snaps
	hasShell := r.ReadyCheck != ""
	hasCustom := e.hasCustom(r)
	if markNeeded {
		if err := m.SetMarks(ctx, w.ID, executor.SetOp(e.owner.mark("starting", m.Clock()))); err != nil {
			return o.failed(err)
		}
	}
	// Whatever the outcome, the "starting" mark goes (a dead window keeps it
	// harmlessly: the state of a dead window ignores marks).
	// The bound is generous: with a thousand processes the update waits
	// behind a long queue of tmux work, and a slow bookkeeping step must
	// not turn a success into a failure.
	finish := func(set executor.MarkUpdate) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if ml, ok := m.(executor.MarkLister); ok && set.Ready != nil && *set.Ready {
			// Its dependants look at the machine next: the listing rides
			// with the mark.
			start := time.Now()
			snap, ok, err := ml.SetMarksAndList(cctx, w.ID, set.And(executor.SetOp("")))
			if err == nil && ok {
				snaps.offer(start, snap)
			}
			return err
		}
		return m.SetMarks(cctx, w.ID, set.And(executor.SetOp("")))
	}
	rctx := ctx
	readyTimeout := time.Duration(r.ReadyTimeout)
	if readyTimeout <= 0 && hasCustom {
		readyTimeout = DefaultCustomReadyTimeout
	}
	if readyTimeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	opDeadline, hasOpDeadline := waitDeadline(ctx)
	if hasOpDeadline {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(rctx, opDeadline)
		defer cancel()
	}
	if hasShell || hasCustom {
		em.emit(Checking, p, level, "checking readiness")
	}
	if offset < 0 && hasCustom {
		offset = 0
	}
	pl := newPoller(time.Duration(r.ReadyPeriod))
	lastBeat := time.Now()
	lastReason, lastSaid := "", ""
	for {
		// The check and the window listing run concurrently: readiness is
		// noticed one check's time after it holds.
		type snapResult struct {
			snap executor.Snapshot
			err  error
		}
		snapc := make(chan snapResult, 1)
		go func() {
			snap, err := snaps.get(ctx, time.Now())
			snapc <- snapResult{snap, err}
		}()
		ok, reason, raised := e.pollChecks(rctx, o, w, offset)
		if raised != nil {
			<-snapc
			_ = finish(executor.MarkUpdate{})
			return failf(em, p, level, "%v; it keeps running", raised)
		}
		sr := <-snapc
		snap, err := sr.snap, sr.err
		if err != nil {
			_ = finish(executor.MarkUpdate{})
			return o.failed(err)
		}
		cur, err := e.stillAlive(ctx, o, snap, w.ID)
		if cur == nil {
			return err
		}
		if ok {
			// Told at once; the mark follows (dependants start after it).
			em.publish(Event{Kind: Ready, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "ready", PID: cur.PanePID})
			if err := finish(executor.SetReady(true)); err != nil {
				// It is ready (the check passed); only the record failed.
				em.emit(Info, p, level, "ready, but its ready mark could not be recorded (status may show RUNNING): %v", err)
			}
			return nil
		}
		if reason != "" {
			// The timeout's message gives the last reason, whenever the
			// timeout comes (a first try that took the whole ready_timeout
			// on a loaded machine too); a reason is told as an event once
			// the fast phase is over.
			lastReason = reason
		}
		if reason != lastSaid && reason != "" && time.Since(pl.start) > fastPhase {
			em.emit(Checking, p, level, "not ready: %s", reason)
			lastSaid = reason
		}
		if time.Since(lastBeat) > heartbeatEvery {
			_ = m.SetMarks(ctx, w.ID, executor.SetOp(e.owner.mark("starting", m.Clock())))
			lastBeat = time.Now()
		}
		if err := sleepCtx(rctx, pl.next()); err != nil {
			_ = finish(executor.MarkUpdate{})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if hasOpDeadline && !time.Now().Before(opDeadline) {
				if markNeeded {
					// It ran before this operation (its readiness was
					// being checked again): not its failure; the dependant
					// that waited for it reports the timeout.
					return context.DeadlineExceeded
				}
				// The operation's timeout: told like any failure (alerts
				// see it), and still a deadline for the caller.
				msg := "not ready within the operation's timeout; it keeps running"
				if lastReason != "" {
					msg += ": " + lastReason
				}
				em.emit(Failed, p, level, "%s", msg)
				return &ProcessError{Process: p.Name, Msg: msg, Cause: context.DeadlineExceeded}
			}
			msg := fmt.Sprintf("not ready after %s (ready_timeout); it keeps running", readyTimeout)
			if lastReason != "" {
				msg += ": " + lastReason
			}
			return failf(em, p, level, "%s", msg)
		}
	}
}

// needsOffset reports whether r's checks read this run's output.
func (e *Engine) needsOffset(r *config.Resolved) bool {
	return e.hasCustom(r) || strings.Contains(r.ReadyCheck, "LAUNCHER_LOG_START")
}

// runOffset finds where the output of the run in w starts in its log (the
// byte offset of its "[launcher] starting … (run TAG)" line); 0 when the
// line is not there (a log rotated away, an old launcher's window).
func (e *Engine) runOffset(ctx context.Context, m executor.Machine, w executor.Window) int64 {
	if w.Marks.Log == "" || w.Marks.Tag == "" {
		return 0
	}
	res, err := m.Exec(ctx, executor.ExecSpec{
		Script:  `grep -a -b -F -- "$LAUNCHER_MARK" "$LAUNCHER_LOG" | tail -n 1 | cut -d: -f1`,
		Env:     []executor.EnvVar{{Name: "LAUNCHER_MARK", Value: "(run " + w.Marks.Tag + ")"}, {Name: "LAUNCHER_LOG", Value: w.Marks.Log}},
		Timeout: 10 * time.Second,
	})
	if err != nil || res.ExitCode != 0 {
		return 0
	}
	var off int64
	if _, err := fmt.Sscan(strings.TrimSpace(string(res.Stdout)), &off); err != nil {
		return 0
	}
	return off
}

// hasCustom reports whether r has a check that is not a shell command (a
// check kind, or a Lua ready_check function).
func (e *Engine) hasCustom(r *config.Resolved) bool {
	return r.CheckKind != "" || (e.checker != nil && e.checker.HasCustom(r.Name))
}

// pollChecks runs r's ready checks once (the shell check, then the custom
// ones): ok when all pass, else the reason; raised is a custom check that
// raised an error (the start fails at once).
func (e *Engine) pollChecks(ctx context.Context, o *procOp, w executor.Window, offset int64) (ok bool, reason string, raised *CheckError) {
	r := o.r
	ok = true
	if r.ReadyCheck != "" {
		ok, reason = e.shellCheck(ctx, o.m, r, w.Marks.Log, offset)
	}
	if ok && e.hasCustom(r) && e.checker != nil {
		var err error
		// One try is bounded like a shell check's: a check that never
		// returns is one slow try, not the whole ready_timeout.
		cctx, cancel := context.WithTimeout(ctx, e.checkTimeout)
		defer cancel()
		ok, reason, err = e.checker.Check(cctx, Probe{Process: r, Machine: o.m, Window: w, LogPath: w.Marks.Log, LogOffset: offset})
		if errors.As(err, &raised) {
			return false, raised.Msg, raised
		}
		if err != nil {
			ok, reason = false, err.Error()
		}
	}
	return ok, reason, nil
}

// stillAlive finds a starting process's window in snap: nil and the
// failure when it was closed or its process died before it was ready.
func (e *Engine) stillAlive(ctx context.Context, o *procOp, snap executor.Snapshot, id string) (*executor.Window, error) {
	cur := windowByID(snap, id)
	if cur == nil {
		return nil, failf(o.em, o.p, o.level, "its tmux window was closed before it became ready")
	}
	if cur.Dead {
		return nil, e.diedBeforeReady(ctx, o, *cur)
	}
	return cur, nil
}

func windowByID(snap executor.Snapshot, id string) *executor.Window {
	for i := range snap.Windows {
		if snap.Windows[i].ID == id {
			return &snap.Windows[i]
		}
	}
	return nil
}

// logStartGuard keeps $LAUNCHER_LOG_START meaningful across a rotation:
// once the log was rotated since the run began (it is now shorter than
// where the run's output started), this run's output goes on at the start
// of the new file.
const logStartGuard = `if [ -f "$LAUNCHER_LOG" ] && [ "$(wc -c < "$LAUNCHER_LOG")" -lt $((LAUNCHER_LOG_START - 1)) ]; then LAUNCHER_LOG_START=1; fi
`

// shellCheck runs the ready_check command once on the process's machine
// (inside its container, if any).
func (e *Engine) shellCheck(ctx context.Context, m executor.Machine, r *config.Resolved, logPath string, offset int64) (bool, string) {
	timeout := e.checkTimeout
	if dl, ok := ctx.Deadline(); ok {
		if rem := time.Until(dl); rem < timeout {
			timeout = max(rem, 10*time.Millisecond)
		}
	}
	env := toExecEnv(r.Env)
	if r.Docker == "" {
		// Checks can look at the process's log (the log is on the host).
		env = append(env, executor.EnvVar{Name: "LAUNCHER_LOG", Value: logPath})
		if offset >= 0 {
			// For `tail -c +$LAUNCHER_LOG_START "$LAUNCHER_LOG"`: this run's output.
			env = append(env, executor.EnvVar{Name: "LAUNCHER_LOG_START", Value: fmt.Sprint(offset + 1)})
		}
	}
	script := r.ReadyCheck
	if r.Docker == "" && offset >= 0 && strings.Contains(script, "LAUNCHER_LOG_START") {
		// Only for checks that read it: the guard costs a wc per try.
		script = logStartGuard + script
	}
	res, err := m.Exec(ctx, executor.ExecSpec{Script: script, Docker: r.Docker, Env: env, Cwd: r.Cwd, Timeout: timeout, EndChildren: true})
	if err != nil {
		return false, err.Error()
	}
	if res.ExitCode == 0 {
		return true, ""
	}
	if res.ExitCode == 124 {
		return false, fmt.Sprintf("ready check timed out after %s", timeout.Round(time.Millisecond))
	}
	reason := fmt.Sprintf("ready check exited with code %d", res.ExitCode)
	if s := strings.TrimSpace(string(res.Stderr)); s != "" {
		reason += ": " + lastLines([]byte(s), 1)[0]
	}
	return false, reason
}

// diedBeforeReady reports a process that exited while its readiness was
// awaited, with its exit code and the last lines of its log.
func (e *Engine) diedBeforeReady(ctx context.Context, o *procOp, w executor.Window) error {
	em, p, level, m := o.em, o.p, o.level, o.m
	tail := tailLog(ctx, m, w.Marks.Log, w.Marks.Tag, 10, time.Second)
	code := w.ExitCode
	msg := fmt.Sprintf("exited with code %d before becoming ready", code)
	if !w.ExitKnown {
		msg = "exited before becoming ready"
	}
	if op, ok := parseOp(w.Marks.Op); ok && op.Kind == "stopping" {
		// A kill reached it while it started: the stop won, whatever the
		// exit code a command cut short at that moment gives.
		msg = "stopped before becoming ready (a stop won)"
	}
	ev := Event{Kind: Failed, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: msg}
	if w.ExitKnown {
		ev.ExitCode = &code
	}
	if len(tail) > 0 {
		ev.Message += "; last lines of its log:\n" + strings.Join(tail, "\n")
	}
	em.publish(ev)
	return &ProcessError{Process: p.Name, Msg: msg, ExitCode: ev.ExitCode, Tail: tail}
}

// waitDead polls until the window is dead or gone, and returns it as the
// listing that saw it dead showed it (nil: gone). A wake (the run's exit
// line reached its log) makes the next polls come quickly: the pane ends
// within moments of it, since its shell only waits for the log writer to
// say it has the line.
func (e *Engine) waitDead(ctx context.Context, snaps *snapshots, id string, wake <-chan struct{}) (*executor.Window, error) {
	pl := newPoller(0)
	var fastUntil time.Time
	for {
		snap, err := snaps.get(ctx, time.Now())
		if err != nil {
			return nil, err
		}
		w := windowByID(snap, id)
		if w == nil || w.Dead {
			return w, nil
		}
		d := pl.next()
		if time.Now().Before(fastUntil) {
			d = wokenPeriod
		}
		t := time.NewTimer(d)
		select {
		case <-wake:
			wake = nil
			fastUntil = time.Now().Add(time.Second)
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// wokenPeriod is waitDead's poll period once the exit line was seen.
const wokenPeriod = 5 * time.Millisecond

// awaitOneShot follows a one-shot's output until it exits: exit 0 is
// success (its window is closed), anything else fails its dependants (the
// window stays, so status shows DEAD with the exit code).
func (e *Engine) awaitOneShot(ctx context.Context, o *procOp, w executor.Window, offset int64) error {
	em, r, p, level, m, snaps := o.em, o.r, o.p, o.level, o.m, o.snaps
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followed := make(chan struct{})
	sawExit := make(chan struct{})
	if offset >= 0 {
		f := &follower{dial: e.dialer(r.Machine), path: w.Marks.Log, offset: offset}
		go func() {
			defer close(followed)
			var once sync.Once
			_ = f.run(fctx, func(line string) bool {
				if executor.IsExitLine(line, w.Marks.Tag) {
					once.Do(func() { close(sawExit) })
					return false
				}
				if !executor.IsLauncherLine(line) {
					em.publish(Event{Kind: Output, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Line: executor.StripTimestamp(line)})
				}
				return true
			})
		}()
	} else {
		close(followed)
		close(sawExit)
	}
	var wake <-chan struct{}
	if offset >= 0 {
		wake = sawExit
	}
	cur, err := e.waitDead(ctx, snaps, w.ID, wake)
	if err != nil {
		return err
	}
	// Let the output catch up with the exit (bounded: the log writer may
	// lag, or the log may be unreadable).
	select {
	case <-sawExit:
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	stopFollow()
	<-followed
	if cur == nil {
		return failf(em, p, level, "its tmux window was closed before it finished")
	}
	code := cur.ExitCode
	if cur.ExitKnown && code == 0 {
		em.publish(Event{Kind: Exited, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "success", ExitCode: &code, Expected: true})
		if err := m.CloseWindow(ctx, cur.ID); err != nil {
			em.emit(Info, p, level, "could not close its window: %v", err)
		}
		return nil
	}
	msg := fmt.Sprintf("failed with exit code %d", code)
	ev := Event{Kind: Failed, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: msg}
	if cur.ExitKnown {
		ev.ExitCode = &code
	} else {
		msg = "failed"
		ev.Message = msg
	}
	em.publish(ev)
	return &ProcessError{Process: p.Name, Msg: msg, ExitCode: ev.ExitCode}
}

// lingerGrace is how long processes of an earlier run may take to exit
// after their window closed before a start calls them left over.
const lingerGrace = 2 * time.Second

// stillThere looks again, for up to lingerGrace, at processes of an earlier
// run found by a start, and returns those that stay.
func stillThere(ctx context.Context, m executor.Machine, p *config.Process, w *executor.Window, pids []int, tags []string) ([]int, []string) {
	deadline := time.Now().Add(lingerGrace)
	for time.Now().Before(deadline) {
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			break
		}
		tagged, err := m.Tagged(ctx)
		if err != nil {
			break
		}
		pids, tags = orphansOf(p, w, logPathOf(ctx, m, p), tagged)
		if len(pids) == 0 {
			break
		}
	}
	return pids, tags
}
