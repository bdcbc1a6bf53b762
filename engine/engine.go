// Package engine brings processes up and down in dependency order, gates them
// on readiness, reports their state and follows their logs. It drives
// machines only through the executor interfaces and reports every step as a
// typed Event; it holds no global state, so several operations (and several
// engines) in one process never interfere.
package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// Checker runs ready checks that are not shell commands: check kinds
// (`ready_check: {check: tcp, …}`) and per-process check functions
// registered by plugins. The Lua host implements it.
type Checker interface {
	// HasCustom reports whether process has a registered check function.
	HasCustom(process string) bool
	// Check runs one poll of the custom checks of p (the kind from the
	// config, then the registered function, both when present). ok reports
	// readiness; reason says what is missing while not ready.
	Check(ctx context.Context, p Probe) (ok bool, reason string, err error)
}

// CheckError is a custom check that raised an error (rather than answering
// "not ready"): the start fails at once with its message.
type CheckError struct{ Msg string }

func (e *CheckError) Error() string { return "its ready check raised an error: " + e.Msg }

// DefaultCustomReadyTimeout bounds the wait for a custom (Lua) ready check
// when the process sets no ready_timeout: a check that never passes must not
// hang a bring-up forever.
const DefaultCustomReadyTimeout = 2 * time.Minute

// Probe is what a custom check gets to look at.
type Probe struct {
	Process *config.Resolved
	Machine executor.Machine
	Window  executor.Window
	// LogPath is the process's log file on its machine; LogOffset is where
	// this run's output starts in it.
	LogPath   string
	LogOffset int64
}

// Options configure an Engine.
type Options struct {
	Config    *config.Config
	Connector executor.Connector
	// Bus receives every event; nil creates a private one.
	Bus *Bus
	// Checker runs custom checks; nil means only shell checks exist.
	Checker Checker
	// Owner identifies this launcher in window marks; zero means Self().
	Owner Owner
	// CheckTimeout bounds one run of a shell ready check (default 10s).
	CheckTimeout time.Duration
}

// Engine runs operations on the processes of one config.
type Engine struct {
	// cfg is swapped whole when a process is added or removed at run time
	// (a GUI's custom process); readers take it with conf().
	cfg          atomic.Pointer[config.Config]
	conn         executor.Connector
	bus          *Bus
	checker      Checker
	owner        Owner
	checkTimeout time.Duration
	opSeq        atomic.Uint64

	mu    sync.Mutex
	snaps map[string]*snapshots
	locks map[string]*procMutex
	// spawned is the window each persistent process got from this engine,
	// so Monitor's first poll still reports an exit that came before it.
	spawned map[string]string

	monitorOnce sync.Once
	// baseline is closed once the monitor MonitorOnce started has seen
	// what runs (set in monitorOnce, before the monitor starts).
	baseline     chan struct{}
	baselineOnce sync.Once
	settle       chan chan struct{} // MonitorSettle's requests (set with baseline)
	monitorEnded chan struct{}      // closed when that monitor returned (after its last look)
	// watched is the monitor's last poll; lastOwn is when this engine's
	// operations last published an event or ended (Unix nanoseconds).
	watched atomic.Pointer[watchedRows]
	lastOwn atomic.Int64
}

type watchedRows struct {
	rows  []Status
	taken time.Time
}

// New returns an Engine.
func New(o Options) *Engine {
	e := &Engine{conn: o.Connector, bus: o.Bus, checker: o.Checker, owner: o.Owner,
		checkTimeout: o.CheckTimeout, snaps: map[string]*snapshots{}, locks: map[string]*procMutex{}, spawned: map[string]string{}}
	e.cfg.Store(o.Config)
	if e.bus == nil {
		e.bus = NewBus()
	}
	if e.owner.Host == "" {
		e.owner = Self()
	}
	if e.checkTimeout == 0 {
		e.checkTimeout = 10 * time.Second
	}
	return e
}

// Config returns the engine's config: the file's processes and those
// added at run time (AddProcess).
func (e *Engine) Config() *config.Config { return e.conf() }

func (e *Engine) conf() *config.Config { return e.cfg.Load() }

// Bus returns the engine's event bus.
func (e *Engine) Bus() *Bus { return e.bus }

// SetChecker installs the custom check runner (the Lua host registers
// itself after the engine exists).
func (e *Engine) SetChecker(c Checker) { e.checker = c }

// machine dials (or reuses) a machine and its coalescing snapshot cache.
func (e *Engine) machine(ctx context.Context, name string) (executor.Machine, *snapshots, error) {
	m, err := e.conn.Machine(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.snaps[name]
	if s == nil || s.m != m {
		s = &snapshots{m: m}
		e.snaps[name] = s
	}
	return m, s, nil
}

// lock serialises spawning and stopping of one process within this engine.
func (e *Engine) lock(machine, session, name string) *procMutex {
	key := machine + "\x00" + session + "\x00" + name
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.locks[key]
	if l == nil {
		l = &procMutex{}
		e.locks[key] = l
	}
	return l
}

// procMutex serialises this engine's operations on one process and
// remembers when the last of them let go: a window listing older than that
// may miss what it did, so the next holder does not take one.
type procMutex struct {
	mu    sync.Mutex
	letGo atomic.Pointer[time.Time] // read without mu by dependants' looks
}

// Lock takes the process and returns when its last holder let go.
func (m *procMutex) Lock() time.Time {
	m.mu.Lock()
	return m.lastLetGo()
}

// Unlock lets go of the process.
func (m *procMutex) Unlock() {
	t := time.Now()
	m.letGo.Store(&t)
	m.mu.Unlock()
}

// lastLetGo is when the last holder let go (zero: never held), without
// waiting for one that holds it now.
func (m *procMutex) lastLetGo() time.Time {
	if t := m.letGo.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// emitter publishes the events of one operation, and holds what the
// operation shares between its processes.
type emitter struct {
	bus     *Bus
	last    *atomic.Int64 // the engine's lastOwn
	op      uint64
	request string
	scans   *scans
	since   time.Time // when the operation's plan check began (zero: unknown)
}

// scans runs one scan of launcher's processes per machine and operation
// (a bring-up of a thousand processes reads /proc once per machine).
type scans struct {
	mu sync.Mutex
	by map[executor.Machine]*scanCall
	// stopped are the runs a kill stopped, per machine, swept at its end
	// for processes that escaped the pane.
	stopped map[executor.Machine][]stoppedRun
}

type stoppedRun struct {
	p     *config.Process
	level int
	tag   string
}

func (s *scans) noteStopped(m executor.Machine, r stoppedRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped == nil {
		s.stopped = map[executor.Machine][]stoppedRun{}
	}
	s.stopped[m] = append(s.stopped[m], r)
}

type scanCall struct {
	done   chan struct{}
	tagged []executor.TaggedProcess
	err    error
}

func (s *scans) get(ctx context.Context, m executor.Machine) ([]executor.TaggedProcess, error) {
	s.mu.Lock()
	c := s.by[m]
	if c == nil {
		c = &scanCall{done: make(chan struct{})}
		s.by[m] = c
		s.mu.Unlock()
		c.tagged, c.err = m.Tagged(ctx)
		close(c.done)
	} else {
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.tagged, c.err
}

func (em emitter) emit(kind Kind, p *config.Process, level int, format string, args ...any) Event {
	em.touch()
	ev := Event{Time: time.Now(), Kind: kind, Level: level, Op: em.op, Request: em.request}
	if p != nil {
		ev.Process, ev.Machine, ev.Session = p.Name, p.Machine, p.Session
	}
	if format != "" {
		ev.Message = fmt.Sprintf(format, args...)
	}
	em.bus.Publish(ev)
	return ev
}

// touch records that an operation of this engine changed something now.
func (em emitter) touch() {
	if em.op != 0 && em.last != nil {
		em.last.Store(time.Now().UnixNano())
	}
}

func (em emitter) publish(ev Event) {
	em.touch()
	ev.Op, ev.Request = em.op, em.request
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	em.bus.Publish(ev)
}

func (e *Engine) newEmitter(ctx context.Context) emitter {
	label, _ := ctx.Value(requestKey{}).(string)
	since, _ := ctx.Value(planKey{}).(time.Time)
	return emitter{bus: e.bus, last: &e.lastOwn, op: e.opSeq.Add(1), request: label, scans: &scans{by: map[executor.Machine]*scanCall{}}, since: since}
}

// planKey carries when an operation began checking its plan: the listings
// its check took may serve its first looks (plan, check, then act on what
// was checked), instead of a listing of their own each.
type planKey struct{}

// withPlanStart marks ctx as an operation whose plan check starts now.
func withPlanStart(ctx context.Context) context.Context {
	if _, ok := ctx.Value(planKey{}).(time.Time); ok {
		return ctx // a restart's kill and start: the restart's check
	}
	return context.WithValue(ctx, planKey{}, time.Now())
}

// firstLook is when a look of em's operation at p's window may have
// started: after the plan's check began, and after the last operation of
// this engine on p let go of it (what it did must be seen).
func (em emitter) firstLook(lockedSince time.Time) time.Time {
	after := em.since
	if after.IsZero() {
		after = time.Now()
	}
	if after.Before(lockedSince) {
		after = lockedSince
	}
	return after
}

// ProcessError is a failure of a process (it exited, timed out, a
// dependency failed): the CLI exits 1 for it.
type ProcessError struct {
	Process  string
	Msg      string
	ExitCode *int
	Tail     []string
	// Cause is the failure of a dependency this one follows from.
	Cause error
}

func (e *ProcessError) Error() string { return fmt.Sprintf("%s: %s", e.Process, e.Msg) }

// Unwrap returns the dependency failure behind this one.
func (e *ProcessError) Unwrap() error { return e.Cause }

// ConflictError reports a same-name tmux window launcher does not own.
type ConflictError struct {
	Process, Session, Machine string
	Ambiguous                 bool
	// Window is the foreign window (not when Ambiguous): its pane's pid,
	// whether it lives, and who started it when that can be told.
	Window *executor.Window
}

func (e *ConflictError) Error() string {
	if e.Ambiguous {
		return fmt.Sprintf("refusing to control ambiguous tmux target '%s:%s' on %s: several windows have that name", e.Session, e.Process, e.Machine)
	}
	what := "it was not started by launcher (rename or close it)"
	if w := e.Window; w != nil {
		by := "not started by launcher"
		if w.Foreign != "" {
			by = "started by " + w.Foreign
		}
		life := fmt.Sprintf("pid %d, running", w.PanePID)
		if w.Dead {
			life = "its process ended"
			if w.ExitKnown {
				life = fmt.Sprintf("its process ended with code %d", w.ExitCode)
			}
		}
		what = fmt.Sprintf("%s (%s): `launcher adopt %s` takes it over without a restart", by, life, e.Process)
	}
	return fmt.Sprintf("refusing to control unmanaged tmux window '%s:%s' on %s: %s", e.Session, e.Process, e.Machine, what)
}

// findWindow returns the managed window of p in snap, nil when there is
// none, or a ConflictError.
func findWindow(snap executor.Snapshot, p *config.Process) (*executor.Window, error) {
	ws := snap.Find(p.Session, p.Name)
	switch {
	case len(ws) == 0:
		return nil, nil
	case len(ws) > 1:
		return nil, &ConflictError{Process: p.Name, Session: p.Session, Machine: p.Machine, Ambiguous: true}
	case !ws[0].Marks.Managed:
		return nil, &ConflictError{Process: p.Name, Session: p.Session, Machine: p.Machine, Window: &ws[0]}
	}
	w := ws[0]
	return &w, nil
}

// AddProcess adds a process that is not in the config file (a GUI's custom
// process) to this engine's config; it stays until RemoveProcess or the
// engine's end. Operations already under way keep the config they began
// with where it matters (a plan is one config).
func (e *Engine) AddProcess(cu config.Custom) (*config.Process, error) {
	for {
		old := e.conf()
		next, err := old.WithCustom(cu)
		if err != nil {
			return nil, err
		}
		if e.cfg.CompareAndSwap(old, next) {
			return next.Process(cu.Name), nil
		}
	}
}

// RemoveProcess stops a process AddProcess added and removes it from the
// config. A stop that fails leaves it running and in the config.
func (e *Engine) RemoveProcess(ctx context.Context, name string) error {
	if _, err := e.conf().WithoutCustom(name); err != nil {
		return err
	}
	if err := e.Kill(ctx, []string{name}, false, KillOptions{}); err != nil {
		return err
	}
	for {
		old := e.conf()
		next, err := old.WithoutCustom(name)
		if err != nil {
			return err
		}
		if e.cfg.CompareAndSwap(old, next) {
			return nil
		}
	}
}
