package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// OpPlan is what one operation will do, computed before it acts: which
// processes it stops and starts, hence which machines and log files it
// needs. An operation checks its plan (CheckPlan) before changing
// anything, so a machine that is down or a log that cannot be written
// fails it with nothing changed.
type OpPlan struct {
	Op string `json:"op"` // run, kill, restart
	// Stop lists the processes stopped, in config order (the engine stops
	// dependants before what they depend on).
	Stop []string `json:"stop,omitempty"`
	// Start lists the processes started, in config order (the engine
	// starts each after its dependencies are ready).
	Start []string `json:"start,omitempty"`
}

// Machines are the machines the plan touches, sorted.
func (p OpPlan) Machines(cfg *config.Config) []string {
	seen := map[string]bool{}
	for _, n := range append(append([]string(nil), p.Stop...), p.Start...) {
		if q := cfg.Process(n); q != nil {
			seen[q.Machine] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// mayRun reports whether a state is a process that runs (or is about to
// run again): what a restart must bring back. UNAVAILABLE counts too: its
// machine is not answering, so it may run, and the check of the plan then
// refuses the operation instead of guessing.
func mayRun(s State) bool {
	switch s {
	case StateReady, StateRunning, StateStarting, StateRestarting, StateUnavailable:
		return true
	}
	return false
}

// inConfigOrder returns the names of set in the config's order.
func inConfigOrder(cfg *config.Config, set map[string]bool) []string {
	var out []string
	for _, p := range cfg.Processes {
		if set[p.Name] {
			out = append(out, p.Name)
		}
	}
	return out
}

// dependantsOf collects the persistent dependants of name, transitively
// (through one-shot steps), into set.
func dependantsOf(cfg *config.Config, name string, set map[string]bool) {
	for _, q := range cfg.Dependants(name) {
		if q.Persistent {
			if !set[q.Name] {
				set[q.Name] = true
				dependantsOf(cfg, q.Name, set)
			}
			continue
		}
		dependantsOf(cfg, q.Name, set)
	}
}

// PlanKill is what a kill of names (every process with all) stops: each
// name, its persistent dependants, and for a one-shot (a group) what it
// depends on.
func PlanKill(cfg *config.Config, names []string, all bool) OpPlan {
	if all {
		names = cfg.Names()
	}
	stop := map[string]bool{}
	var add func(n string)
	add = func(n string) {
		if stop[n] {
			return
		}
		p := cfg.Process(n)
		if p == nil {
			return
		}
		stop[n] = true
		deps := map[string]bool{}
		dependantsOf(cfg, n, deps)
		for d := range deps {
			add(d)
		}
		if !p.Persistent {
			for _, d := range p.Depends {
				add(d)
			}
		}
	}
	for _, n := range names {
		add(n)
	}
	return OpPlan{Op: "kill", Stop: inConfigOrder(cfg, stop)}
}

// PlanStart is what a start of a resolved plan starts (what already runs
// is left as it is when the start reaches it).
func PlanStart(cfg *config.Config, plan *config.Plan) OpPlan {
	start := map[string]bool{}
	for _, r := range plan.Processes {
		start[r.Name] = true
	}
	return OpPlan{Op: "run", Start: inConfigOrder(cfg, start)}
}

// PlanRestart is what a restart of name does given the states of its
// dependants now: it stops name and its persistent dependants, starts name
// (with its dependencies) and starts again the dependants that ran.
func PlanRestart(cfg *config.Config, name string, plan *config.Plan, states map[string]State) OpPlan {
	k := PlanKill(cfg, []string{name}, false)
	start := map[string]bool{}
	for _, r := range plan.Processes {
		start[r.Name] = true
	}
	deps := map[string]bool{}
	dependantsOf(cfg, name, deps)
	var again []string
	for d := range deps {
		if mayRun(states[d]) {
			again = append(again, d)
		}
	}
	// A dependant started again brings its own dependencies.
	procs, _ := cfg.Closure(again)
	for _, p := range procs {
		start[p.Name] = true
	}
	return OpPlan{Op: "restart", Stop: k.Stop, Start: inConfigOrder(cfg, start)}
}

// PlanError is an operation refused by the check of its plan: nothing was
// changed. Problems names each thing the plan needs that is not there.
type PlanError struct {
	Op       string
	Target   string
	Problems []error
}

func (e *PlanError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: nothing was changed:", e.Op, e.Target)
	down := false
	for _, p := range e.Problems {
		b.WriteString("\n  - " + p.Error())
		down = down || executor.IsUnavailable(p)
	}
	if down && e.Op == "kill" {
		b.WriteString("\n  (kill --skip-unreachable stops what needs no machine that is down)")
	}
	return b.String()
}

// Unwrap returns the problems (errors.As finds an UnavailableError among
// them, so `run --ssh-retries` retries a plan refused for a machine).
func (e *PlanError) Unwrap() []error { return e.Problems }

// KindChecker is implemented by Checkers that can tell whether a check
// kind is registered (a plugin left out with --no-plugins registers none).
type KindChecker interface {
	KnowsKind(kind string) bool
}

// unknownKinds reports the processes of a start whose ready check kind no
// one registered.
func (e *Engine) unknownKinds(p OpPlan) []error {
	kc, ok := e.checker.(KindChecker)
	var errs []error
	for _, n := range p.Start {
		q := e.conf().Process(n)
		if q == nil || q.ReadyCheck == nil || q.ReadyCheck.Kind == "" {
			continue
		}
		if e.checker == nil || ok && !kc.KnowsKind(q.ReadyCheck.Kind) {
			errs = append(errs, &config.Error{Pos: q.ReadyCheck.Pos, Msg: fmt.Sprintf("process %q: unknown check kind %q", n, q.ReadyCheck.Kind),
				Hint: "the plugin that registers it is not loaded (--no-plugins?)"})
		}
	}
	return errs
}

// LogChecker is implemented by machines that can tell, before a start,
// whether the log files of the processes they will run can be written
// safely (not a symbolic link, not another user's, a writable file system
// with room).
type LogChecker interface {
	CheckLogs(ctx context.Context, paths []string) error
}

// CheckPlan checks what p needs before the operation acts: every machine
// of a process it stops or starts answers (its tmux server lists its
// windows), no process it starts is in a window launcher does not own,
// and every log it will write is safe and writable. containers lists the
// containers the started processes run in, per machine. All machines are
// checked at once; every problem is reported.
func (e *Engine) CheckPlan(ctx context.Context, p OpPlan, target string, containers map[string][]string) error {
	byMachine := map[string][]*config.Process{}
	starts := map[string]bool{}
	for _, n := range p.Start {
		starts[n] = true
	}
	seen := map[string]bool{}
	for _, n := range append(append([]string(nil), p.Stop...), p.Start...) {
		q := e.conf().Process(n)
		if q == nil || seen[n] {
			continue
		}
		seen[n] = true
		byMachine[q.Machine] = append(byMachine[q.Machine], q)
	}
	var mu sync.Mutex
	var problems []error
	add := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = append(problems, j.Unwrap()...)
			return
		}
		problems = append(problems, err)
	}
	for _, err := range e.unknownKinds(p) {
		add(err)
	}
	var wg sync.WaitGroup
	for mach, procs := range byMachine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, snaps, err := e.machine(ctx, mach)
			if err != nil {
				add(err)
				return
			}
			snap, err := snaps.get(ctx, time.Now())
			if err != nil {
				add(err)
				return
			}
			var logs []string
			for _, q := range procs {
				if starts[q.Name] {
					// A window launcher does not own would fail the start
					// half-way (a kill of it fails alone, leaving the rest).
					if _, err := findWindow(snap, q); err != nil {
						add(err)
					}
					path, err := m.LogPath(ctx, q.Session, q.Name)
					if err != nil {
						add(err)
						continue
					}
					logs = append(logs, path)
				}
			}
			if lc, ok := m.(LogChecker); ok && len(logs) > 0 {
				if err := lc.CheckLogs(ctx, logs); err != nil {
					add(err)
				}
			}
			for _, c := range containers[mach] {
				if err := m.CheckContainer(ctx, c); err != nil {
					add(err)
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(problems) == 0 {
		return nil
	}
	// Several problems of one kind read best together, in a stable order.
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Error() < problems[j].Error() })
	return &PlanError{Op: p.Op, Target: target, Problems: dedupe(problems)}
}

func dedupe(errs []error) []error {
	var out []error
	for i, err := range errs {
		if i > 0 && err.Error() == errs[i-1].Error() {
			continue
		}
		out = append(out, err)
	}
	return out
}

// containersOf lists, per machine, the containers the processes of plan
// run in.
func containersOf(plan *config.Plan) map[string][]string {
	out := map[string][]string{}
	seen := map[string]bool{}
	for _, r := range plan.Processes {
		if r.Docker == "" || seen[r.Machine+"\x00"+r.Docker] {
			continue
		}
		seen[r.Machine+"\x00"+r.Docker] = true
		out[r.Machine] = append(out[r.Machine], r.Docker)
	}
	return out
}

// IsPlanRefusal reports whether err is an operation refused by its check.
func IsPlanRefusal(err error) bool {
	var pe *PlanError
	return errors.As(err, &pe)
}

type waitDeadlineKey struct{}

// WithWaitDeadline bounds the waits of the operations run with ctx (a
// process's readiness, hence its dependants' wait for it) at t, without
// bounding their acts: a stop or a spawn that began finishes, so an operation that
// times out is never left half-made (a restart never leaves its process
// stopped). The operation then fails with context.DeadlineExceeded.
func WithWaitDeadline(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, waitDeadlineKey{}, t)
}

func waitDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(waitDeadlineKey{}).(time.Time)
	return t, ok
}
