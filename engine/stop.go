package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// KillOptions tune a stop.
type KillOptions struct {
	// Force stops at once: SIGKILL to the whole run, no gentle signal and
	// no wait for the stop timeout.
	Force bool
	// SkipUnreachable stops what can be stopped when machines are down:
	// every named process whose stop needs no unreachable machine (its
	// dependants included). The kill still fails, naming what it left.
	SkipUnreachable bool
}

// Kill stops the named processes (every process when names is empty and
// all is set). A persistent process's running dependants stop first,
// concurrently; a one-shot acts as a group: stopping it stops its
// dependencies. Each stop sends SIGINT (C-c, as an operator would), then
// SIGTERM at half of stop_timeout and SIGKILL to the whole process session
// when stop_timeout runs out, so a stop always ends.
func (e *Engine) Kill(ctx context.Context, names []string, all bool, opts KillOptions) error {
	if all {
		names = e.conf().Names()
	}
	if len(names) == 0 {
		return errors.New("kill needs a process name or --all")
	}
	for _, n := range names {
		if _, err := e.conf().Lookup(n); err != nil {
			return err
		}
	}
	target := strings.Join(names, " ")
	if all {
		target = "--all"
	}
	// A kill's waits are its acts: its timeout bounds the whole of it (a
	// restart's stop, which must finish, calls kill directly).
	if dl, ok := waitDeadline(ctx); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	ctx = withPlanStart(ctx)
	err := e.CheckPlan(ctx, PlanKill(e.conf(), names, all), target, nil)
	if err != nil && opts.SkipUnreachable {
		return e.killReachable(ctx, err, names, all, opts)
	}
	if err != nil {
		return err
	}
	return e.kill(ctx, names, all, opts)
}

// killReachable is a kill with SkipUnreachable after the check of its
// plan found machines down: it stops the named processes whose stop needs
// none of them, and fails naming the others.
func (e *Engine) killReachable(ctx context.Context, refused error, names []string, all bool, opts KillOptions) error {
	pe := &PlanError{}
	if !errors.As(refused, &pe) {
		return refused
	}
	down := map[string]bool{}
	for _, p := range pe.Problems {
		var u *executor.UnavailableError
		if !errors.As(p, &u) {
			return refused // another problem: nothing changes
		}
		down[u.Machine] = true
	}
	cfg := e.conf() // one config for the whole plan
	if all {
		names = cfg.Names()
	}
	var keep, left []string
	for _, n := range names {
		ok := true
		for _, q := range PlanKill(cfg, []string{n}, false).Stop {
			if down[cfg.Process(q).Machine] {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, n)
		} else {
			left = append(left, n)
		}
	}
	if len(keep) > 0 {
		if err := e.CheckPlan(ctx, PlanKill(e.conf(), keep, false), strings.Join(keep, " "), nil); err != nil {
			return err
		}
		if err := e.kill(ctx, keep, false, opts); err != nil {
			return err
		}
	}
	machines := make([]string, 0, len(down))
	for m := range down {
		machines = append(machines, m)
	}
	sort.Strings(machines)
	return &executor.UnavailableError{Machine: strings.Join(machines, ", "), Op: "kill",
		Err: fmt.Errorf("not stopped (they or their dependants are on it): %s", strings.Join(left, ", "))}
}

// kill acts on a checked kill plan.
func (e *Engine) kill(ctx context.Context, names []string, all bool, opts KillOptions) error {
	cfg := e.conf()
	if all {
		names = cfg.Names()
	}
	em := e.newEmitter(ctx)
	// Its last changes (a ready mark follows its event) are older than
	// the end of the operation: Watched views must be newer.
	defer em.touch()
	g := &graph{tasks: map[string]*task{}}
	g.run = func(ctx context.Context, name string, level int) error {
		p, err := cfg.Lookup(name)
		if err != nil {
			return err // removed (a custom process) while the stop ran
		}
		dependants := e.persistentDependants(name)
		if len(dependants) > 0 {
			em.emit(Info, p, level, "stopping dependants: %s", strings.Join(dependants, ", "))
			for i, err := range g.all(ctx, dependants, level+1) {
				if err != nil {
					// Stopping this process would pull the rug from under a
					// dependant that is still running.
					return failf(em, p, level, "not stopped: dependant %s could not be stopped", dependants[i])
				}
			}
		}
		if !p.Persistent {
			if err := e.stopOne(ctx, em, p, level, opts.Force); err != nil {
				return err
			}
			if len(p.Depends) > 0 {
				em.emit(Info, p, level, "stopping dependencies: %s", strings.Join(p.Depends, ", "))
				return errors.Join(g.all(ctx, p.Depends, level+1)...)
			}
			return nil
		}
		return e.stopOne(ctx, em, p, level, opts.Force)
	}
	if err := errors.Join(g.all(ctx, names, 0)...); err != nil {
		return err
	}
	// A stop wins over a start racing it: a dependant that a concurrent run
	// started after this stop passed it is stopped too (a few rounds: each
	// one only finds processes started during the previous).
	for round := 0; round < 3; round++ {
		late := e.startedBehind(ctx, names, all)
		if len(late) == 0 {
			break
		}
		em.emit(Info, nil, 0, "stopping %s, started while this stop ran", strings.Join(late, ", "))
		g = &graph{tasks: map[string]*task{}, run: g.run}
		if err := errors.Join(g.all(ctx, late, 0)...); err != nil {
			return err
		}
	}
	// Then what escaped the panes of every run this kill stopped.
	return e.sweepEscaped(ctx, em)
}

// startedBehind lists the persistent processes a stop of names covers
// (every process with all) that run now.
func (e *Engine) startedBehind(ctx context.Context, names []string, all bool) []string {
	covered := map[string]bool{}
	if all {
		for _, n := range e.conf().Names() {
			covered[n] = true
		}
	} else {
		for _, n := range names {
			covered[n] = true
			dependantsOf(e.conf(), n, covered)
		}
	}
	var list []string
	for _, p := range e.conf().Processes {
		if covered[p.Name] && p.Persistent {
			list = append(list, p.Name)
		}
	}
	if len(list) == 0 {
		return nil // (Status of no names would mean all of them)
	}
	sts, err := e.WindowStates(ctx, list)
	if err != nil {
		return nil
	}
	var late []string
	for _, st := range sts {
		if st.State == StateReady || st.State == StateRunning || st.State == StateStarting {
			late = append(late, st.Process)
		}
	}
	return late
}

// persistentDependants are the persistent processes that depend on name,
// directly or through one-shot steps (a one-shot between them does not make
// a process independent of what the step needed), in config order.
func (e *Engine) persistentDependants(name string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		for _, q := range e.conf().Dependants(n) {
			if seen[q.Name] {
				continue
			}
			seen[q.Name] = true
			if q.Persistent {
				out = append(out, q.Name)
			} else {
				walk(q.Name)
			}
		}
	}
	walk(name)
	return out
}

// stopOne stops the window of one process, escalating until it is dead.
func (e *Engine) stopOne(ctx context.Context, em emitter, p *config.Process, level int, force bool) error {
	o, err := e.newProcOp(ctx, em, p, nil, level)
	if err != nil {
		return err
	}
	m, snaps := o.m, o.snaps
	lk := e.lock(p.Machine, p.Session, p.Name)
	since := lk.Lock()
	defer lk.Unlock()
	w, err := currentWindow(ctx, em, p, level, snaps, em.firstLook(since))
	if err != nil {
		return err
	}
	if w == nil || w.Dead {
		// No live window; processes of one of its runs may still run.
		if tagged, err := em.scans.get(ctx, m); err == nil {
			if _, tags := orphansOf(p, nil, logPathOf(ctx, m, p), tagged); len(tags) > 0 {
				return e.endRuns(ctx, em, m, p, level, tags)
			}
		}
	}
	if w == nil {
		if p.Persistent {
			em.emit(Stopped, p, level, "not running")
		}
		return nil
	}
	if w.Dead {
		if p.Persistent {
			ev := Event{Kind: Stopped, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "already stopped"}
			if w.ExitKnown {
				c := w.ExitCode
				ev.ExitCode = &c
			}
			em.publish(ev)
		}
		return nil
	}
	esc := newEscalation(force, p.ForceSigquit, p.StopTimeout)
	timeout := esc.timeout
	first := esc.first
	mark := executor.SetOp(e.owner.mark("stopping", m.Clock())).And(executor.SetReady(false))
	em.emit(Stopping, p, level, "stopping with SIG%s", first)
	err = m.Signal(ctx, *w, first, mark)
	pending := errors.Is(err, executor.ErrNotStarted)
	if err != nil && !pending {
		return o.failed(err)
	}
	return e.waitStopped(ctx, o, *w, esc, timeout, pending)
}

// waitStopped follows a stop of w until the window is dead or closed,
// signalling as esc says; a stop that cannot end is abandoned (its mark
// removed) with an error. pending: the first signal is still to be sent
// (the pane had not started its command); it is sent once it has.
func (e *Engine) waitStopped(ctx context.Context, o *procOp, w executor.Window, esc *escalation, timeout time.Duration, pending bool) error {
	em, p, level, m, snaps := o.em, o.p, o.level, o.m, o.snaps
	start := time.Now()
	lastBeat := start
	pl := newPoller(0)
	pl.period = 10 * time.Millisecond
	for {
		if err := sleepCtx(ctx, pl.next()); err != nil {
			e.abandonStop(m, w.ID)
			return err
		}
		snap, err := snaps.get(ctx, time.Now())
		if err != nil {
			return o.failed(err)
		}
		cur := windowByID(snap, w.ID)
		if cur != nil && cur.Dead || cur == nil {
			// Processes of this run that left the pane are swept at the
			// end of the kill (one scan per machine).
			em.scans.noteStopped(m, stoppedRun{p: p, level: level, tag: w.Marks.Tag})
		}
		if cur == nil {
			em.emit(Stopped, p, level, "stopped (window closed)")
			return nil
		}
		if cur.Dead {
			ev := Event{Kind: Stopped, Process: p.Name, Machine: p.Machine, Session: p.Session, Level: level, Message: "stopped"}
			if cur.ExitKnown {
				c := cur.ExitCode
				ev.ExitCode = &c
				ev.Message = fmt.Sprintf("stopped (exit code %d)", c)
			}
			em.publish(ev)
			return nil
		}
		if pending && esc.phase == 0 {
			err := m.Signal(ctx, *cur, esc.first, executor.MarkUpdate{})
			if pending = errors.Is(err, executor.ErrNotStarted); err != nil && !pending {
				em.emit(Info, p, level, "SIG%s: %v", esc.first, err)
			}
		}
		elapsed := time.Since(start)
		switch sig, ok := esc.next(elapsed); {
		case !ok:
		case sig == giveUp:
			e.abandonStop(m, w.ID)
			return failf(em, p, level, "still running %s after SIGKILL (a process in uninterruptible sleep?)", esc.killAfter)
		case sig == executor.SIGTERM:
			em.emit(Stopping, p, level, "still running after %s: escalating to SIGTERM", elapsed.Round(time.Millisecond))
			if err := m.Signal(ctx, *cur, sig, executor.MarkUpdate{}); err != nil {
				em.emit(Info, p, level, "SIGTERM: %v", err)
			}
		default:
			em.emit(Stopping, p, level, "still running after stop_timeout %s: sending SIGKILL to its process group", timeout)
			if err := m.Signal(ctx, *cur, sig, executor.MarkUpdate{}); err != nil {
				em.emit(Info, p, level, "SIGKILL: %v", err)
			}
		}
		if time.Since(lastBeat) > heartbeatEvery {
			_ = m.SetMarks(ctx, w.ID, executor.SetOp(e.owner.mark("stopping", m.Clock())))
			lastBeat = time.Now()
		}
	}
}

// abandonStop removes the stopping mark of a stop that did not complete.
func (e *Engine) abandonStop(m executor.Machine, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.SetMarks(ctx, id, executor.SetOp(""))
}

// Restart stops name (and its running dependants, as kill does), starts it
// again with the config's current command, then starts again the dependants
// that were running before.
func (e *Engine) Restart(ctx context.Context, name string, req config.Request, opts KillOptions) error {
	plan, err := e.conf().Resolve([]string{name}, req)
	if err != nil {
		return err
	}
	op, again, err := e.planRestart(ctx, name, plan)
	if err != nil {
		return err
	}
	var againPlan *config.Plan
	containers := containersOf(plan)
	if len(again) > 0 {
		if againPlan, err = e.conf().Resolve(again, req); err != nil {
			return err
		}
		for m, cs := range containersOf(againPlan) {
			containers[m] = append(containers[m], cs...)
		}
	}
	// Check: nothing is stopped unless everything can start again.
	if err := e.CheckPlan(ctx, op, name, containers); err != nil {
		return err
	}
	// Act.
	if err := e.kill(ctx, []string{name}, false, opts); err != nil {
		return err
	}
	if err := e.StartPlanWith(ctx, plan, StartOptions{checked: true}); err != nil {
		return err
	}
	if againPlan != nil {
		return e.StartPlanWith(ctx, againPlan, StartOptions{checked: true})
	}
	return nil
}

// planRestart plans a restart of name from the states its dependants have
// now; again are the dependants it starts again.
func (e *Engine) planRestart(ctx context.Context, name string, plan *config.Plan) (OpPlan, []string, error) {
	states, again, err := e.dependantStates(ctx, name)
	if err != nil {
		return OpPlan{}, nil, err
	}
	return PlanRestart(e.conf(), name, plan, states), again, nil
}

// dependantStates reads the states of name's persistent dependants
// (transitively) with one listing per machine; again are those that may
// run (mayRun), in config order.
func (e *Engine) dependantStates(ctx context.Context, name string) (map[string]State, []string, error) {
	deps := map[string]bool{}
	dependantsOf(e.conf(), name, deps)
	states := map[string]State{}
	if len(deps) == 0 {
		return states, nil, nil
	}
	sts, err := e.WindowStates(ctx, inConfigOrder(e.conf(), deps))
	if err != nil {
		return nil, nil, err
	}
	var again []string
	for _, st := range sts {
		states[st.Process] = st.State
		if mayRun(st.State) {
			again = append(again, st.Process)
		}
	}
	return states, again, nil
}

// Plan computes what operation op ("run", "kill" or "restart") of names
// would do now, without acting: what `launcher plan --op` prints.
func (e *Engine) Plan(ctx context.Context, op string, names []string, req config.Request) (OpPlan, error) {
	switch op {
	case "kill":
		return PlanKill(e.conf(), names, false), nil
	case "run", "restart":
		plan, err := e.conf().Resolve(names, req)
		if err != nil {
			return OpPlan{}, err
		}
		if op == "run" {
			return PlanStart(e.conf(), plan), nil
		}
		p, _, err := e.planRestart(ctx, names[0], plan)
		return p, err
	}
	return OpPlan{}, fmt.Errorf("unknown operation %q (run, kill or restart)", op)
}

// RestartDependants stops the running dependants of name and starts them
// again (after name is ready): what `restart_dependants: true` asks for
// when a restart policy restarted name.
func (e *Engine) RestartDependants(ctx context.Context, name string) error {
	states, again, err := e.dependantStates(ctx, name)
	if err != nil {
		return err
	}
	// Those on a machine that does not answer are left to its return.
	var running []string
	for _, n := range again {
		if states[n] != StateUnavailable {
			running = append(running, n)
		}
	}
	if len(running) == 0 {
		return nil
	}
	if err := e.Kill(ctx, running, false, KillOptions{}); err != nil {
		return err
	}
	return e.Start(ctx, running, config.Request{})
}

// sweepEscaped ends the processes of the runs this kill stopped that
// outlived their pane (a daemon that called setsid, a child that ignores
// SIGHUP): a stop ends the whole run.
func (e *Engine) sweepEscaped(ctx context.Context, em emitter) error {
	em.scans.mu.Lock()
	stopped := em.scans.stopped
	em.scans.stopped = nil
	em.scans.mu.Unlock()
	var errs []error
	for m, runs := range stopped {
		tagged, err := m.Tagged(ctx)
		if err != nil {
			continue // best effort: the stop itself succeeded
		}
		live := map[string]bool{}
		for _, tp := range tagged {
			live[tp.Tag] = true
		}
		for _, r := range runs {
			if r.tag != "" && live[r.tag] {
				errs = append(errs, e.endRuns(ctx, em, m, r.p, r.level, []string{r.tag}))
			}
		}
	}
	return errors.Join(errs...)
}

// endRuns stops every process of the given runs of p that still runs
// without a window: SIGTERM, then SIGKILL after half of stop_timeout.
func (e *Engine) endRuns(ctx context.Context, em emitter, m executor.Machine, p *config.Process, level int, tags []string) error {
	timeout := newEscalation(false, false, p.StopTimeout).timeout
	remaining := func() []int {
		tagged, err := m.Tagged(ctx)
		if err != nil {
			return nil
		}
		want := map[string]bool{}
		for _, t := range tags {
			want[t] = true
		}
		var pids []int
		for _, tp := range tagged {
			if want[tp.Tag] {
				pids = append(pids, tp.PID)
			}
		}
		return pids
	}
	pids := remaining()
	if len(pids) == 0 {
		return nil
	}
	em.emit(Stopping, p, level, "ending processes that outlived its window (pids %s) with SIGTERM", joinInts(pids))
	for _, sig := range []executor.Signal{executor.SIGTERM, executor.SIGKILL} {
		if err := m.SignalTagged(ctx, tags, sig); err != nil {
			return failf(em, p, level, "%v", err)
		}
		wait := timeout / 2
		if sig == executor.SIGKILL {
			wait = 5 * time.Second
		}
		deadline := time.Now().Add(wait)
		for len(pids) > 0 && time.Now().Before(deadline) {
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
			pids = remaining()
		}
		if len(pids) == 0 {
			em.emit(Stopped, p, level, "stopped the processes that outlived its window")
			return nil
		}
		if sig == executor.SIGTERM {
			em.emit(Stopping, p, level, "still running (pids %s): SIGKILL", joinInts(pids))
		}
	}
	return failf(em, p, level, "processes that outlived its window still run 5s after SIGKILL (pids %s)", joinInts(pids))
}
