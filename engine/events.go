package engine

import (
	"context"
	"path"
	"strings"
	"sync"
	"time"
)

// Kind is the type of an event.
type Kind string

// Event kinds, one per step of an operation. The CLI prints them, Lua scripts
// subscribe to them, and a later HTTP API streams them; the names are stable.
const (
	// Connecting: the step reaches the process's (remote) machine; the
	// SSH dial, when not connected yet, happens now (the reference tool's
	// first event of a start).
	Connecting Kind = "connecting"
	Waiting    Kind = "waiting"  // waiting for dependencies
	Starting   Kind = "starting" // about to spawn
	Started    Kind = "started"  // the window runs (Data: pid)
	Checking   Kind = "checking" // a ready check did not pass yet (Message: why)
	Ready      Kind = "ready"    // ready (or already running and ready)
	Failed     Kind = "failed"   // the step failed (ExitCode when a process exited)
	Exited     Kind = "exited"   // the process ended (ExitCode)
	Stopping   Kind = "stopping" // a stop began (Message: the signal)
	Stopped    Kind = "stopped"  // the process is no longer running
	Output     Kind = "output"   // a line of a one-shot's (or watched process's) output
	Info       Kind = "info"     // anything else worth telling (drift, not running…)
	HostLost   Kind = "host_lost"
	HostBack   Kind = "host_back"
	// Restarted: a restart policy started the process again (ExitCode:
	// the exit that caused it; Message: which restart).
	Restarted Kind = "restarted"
	// StateChanged: the monitor saw a process's state change, whoever
	// caused it (State: the new state).
	StateChanged Kind = "state"
	// User is an event a script or plugin emitted (launcher.emit): Name and
	// Data are its own.
	User Kind = "user"
)

// Event is one step of an operation, or a change the monitor noticed.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    Kind      `json:"event"`
	Process string    `json:"process,omitempty"`
	Machine string    `json:"machine,omitempty"`
	Session string    `json:"session,omitempty"`
	// Level is the depth of the process in the operation's dependency tree
	// ("depth" in JSON: "level" is the reference tool's severity).
	Level int `json:"depth"`
	// Severity0 is Severity as the reference tool's callback level: 0
	// info, 1 warning, 2 error ("level" in JSON).
	Severity0 int    `json:"level"`
	Message   string `json:"message,omitempty"`
	ExitCode  *int   `json:"exit_code,omitempty"`
	PID       int    `json:"pid,omitempty"`
	Line      string `json:"line,omitempty"`
	// Op identifies the operation that emitted the event (0: the monitor).
	Op uint64 `json:"op,omitempty"`
	// Expected is set on Exited events that someone asked for: a stop, or
	// a one-shot that succeeded.
	Expected bool `json:"expected,omitempty"`
	// Already is set on Ready events of processes that were ready before
	// the operation (a re-run found them running).
	Already bool `json:"already,omitempty"`
	// State is the new state of a StateChanged event.
	State State `json:"state,omitempty"`
	// Restarts is the restart count of a Restarted event.
	Restarts int `json:"restarts,omitempty"`
	// Severity is info, warning or error (as the reference GUI shows
	// events): set by the bus from the kind when empty.
	Severity string `json:"severity,omitempty"`
	// Key is the same for one happening in every launcher that watches it
	// (the monitor's exited and restarted events: kind, process, run), so
	// two observers' alerts can be told to be one.
	Key string `json:"key,omitempty"`
	// Name and Data are a User event's name and payload (JSON values).
	Name string `json:"name,omitempty"`
	Data any    `json:"data,omitempty"`
	// Request is the label of the request that started the operation
	// (see WithRequest): an API client finds its operation's steps by it.
	Request string `json:"request,omitempty"`
}

type requestKey struct{}

// WithRequest labels the operations run with ctx: their events carry the
// label in Request.
func WithRequest(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, requestKey{}, label)
}

// Bus delivers events to subscribers. Each subscriber has its own queue
// and goroutine, so a slow subscriber never blocks the engine and events
// reach each subscriber in the order they were published.
type Bus struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []Event
	busy   bool // a handler call is under way
	closed bool
	done   chan struct{}
	filter func(Event) bool
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[*subscriber]struct{}{}} }

// Subscribe calls fn for every event that filter accepts (nil: all), one at
// a time, in publication order. The returned function unsubscribes: it
// delivers what was already queued, then returns.
func (b *Bus) Subscribe(filter func(Event) bool, fn func(Event)) (unsubscribe func()) {
	s := &subscriber{done: make(chan struct{}), filter: filter}
	s.cond = sync.NewCond(&s.mu)
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			for len(s.queue) == 0 && !s.closed {
				s.cond.Wait()
			}
			if len(s.queue) == 0 && s.closed {
				s.mu.Unlock()
				return
			}
			q := s.queue
			s.queue = nil
			s.busy = true
			s.mu.Unlock()
			for _, ev := range q {
				fn(ev)
			}
			s.mu.Lock()
			s.busy = false
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
			s.mu.Lock()
			s.closed = true
			s.cond.Broadcast()
			s.mu.Unlock()
			<-s.done
		})
	}
}

// Flush waits until every subscriber has handled every event published
// before the call.
func (b *Bus) Flush() {
	b.mu.Lock()
	subs := make([]*subscriber, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		for (len(s.queue) > 0 || s.busy) && !s.closed {
			s.cond.Wait()
		}
		s.mu.Unlock()
	}
}

// Publish queues ev for every subscriber.
func (b *Bus) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Severity == "" {
		ev.Severity = severityOf(ev)
	}
	ev.Severity0 = map[string]int{"info": 0, "warning": 1, "error": 2}[ev.Severity]
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		s.mu.Lock()
		if !s.closed {
			s.queue = append(s.queue, ev)
			s.cond.Broadcast()
		}
		s.mu.Unlock()
	}
}

func severityOf(ev Event) string {
	switch ev.Kind {
	case Failed:
		return "error"
	case HostLost, Restarted:
		return "warning"
	case Exited:
		if !ev.Expected {
			return "warning"
		}
	case StateChanged:
		if ev.State == StateDead || ev.State == StateUnavailable || ev.State == StateConflict {
			return "warning"
		}
	}
	return "info"
}

// Glob reports whether name matches pattern, where * matches any run of
// characters, ? one character and [ab] a class (process filters in
// scripts; path.Match syntax).
func Glob(pattern, name string) bool {
	if !strings.ContainsAny(pattern, "*?[") {
		return pattern == name
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}
