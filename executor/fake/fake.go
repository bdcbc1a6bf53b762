// Package fake is an in-memory executor.Machine for unit tests of the
// engine and the Lua host: processes are scripted (exit after a delay,
// ignore signals, print lines) and every call is recorded. Integration tests
// use the real tmux machine instead.
package fake

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Behaviour scripts one spawned process.
type Behaviour struct {
	// ExitAfter ends the process after this long with ExitCode (0: never).
	ExitAfter time.Duration
	ExitCode  int
	// IgnoreInt and IgnoreTerm make the process survive those signals.
	IgnoreInt  bool
	IgnoreTerm bool
	// StartupDelay is how long the pane takes to start its command (a
	// slow .bashrc): key signals before then are ErrNotStarted.
	StartupDelay time.Duration
	// Output lines are appended to the log at start.
	Output []string
	// Later lines are appended after a delay (while the process lives).
	Later []TimedLine
}

// TimedLine is a line a process prints After its start.
type TimedLine struct {
	After time.Duration
	Line  string
}

// Interpret turns a script of the conformance contract's vocabulary into a
// Behaviour, so the fake runs executortest.Contract like a real machine:
// statements separated by "; " among `echo WORDS`, `sleep SECONDS`,
// `exit CODE`, trap with an empty action (ignore SIGNALS) and a final `while true; do …; done`. A
// script that ends without exit exits 0 after its sleeps (bash does).
func Interpret(script string) Behaviour {
	var b Behaviour
	var at time.Duration
	for _, st := range strings.Split(script, "; ") {
		st = strings.TrimSpace(st)
		f := strings.Fields(st)
		switch {
		case len(f) == 0:
		case f[0] == "while":
			return b // runs until signalled
		case f[0] == "echo":
			line := strings.TrimSpace(strings.TrimPrefix(st, "echo"))
			if at == 0 {
				b.Output = append(b.Output, line)
			} else {
				b.Later = append(b.Later, TimedLine{After: at, Line: line})
			}
		case f[0] == "sleep" && len(f) == 2:
			var secs float64
			fmt.Sscan(f[1], &secs)
			at += time.Duration(secs * float64(time.Second))
		case f[0] == "exit" && len(f) == 2:
			fmt.Sscan(f[1], &b.ExitCode)
			b.ExitAfter = max(at, time.Millisecond)
			return b
		case f[0] == "trap":
			b.IgnoreInt = strings.Contains(st, "INT")
			b.IgnoreTerm = strings.Contains(st, "TERM")
		}
	}
	b.ExitAfter = max(at, time.Millisecond)
	return b
}

// Machine is a fake machine. The zero value is not usable: use New.
type Machine struct {
	name string
	// Behave decides how a spawned process behaves (default: runs forever).
	Behave func(spec executor.SpawnSpec) Behaviour
	// Check answers Exec calls (default: exit 0).
	Check func(spec executor.ExecSpec) executor.Result
	// Containers lists running containers (CheckContainer).
	Containers map[string]bool
	// BeforeSnapshot, when set, runs at the start of each Snapshot (a
	// test's Ctrl-C in the middle of a look).
	BeforeSnapshot func()
	// Ahead is how far the machine's wall clock is ahead of the test's
	// (a robot whose clock disagrees with the operator's laptop). Set it
	// before the machine is used.
	Ahead time.Duration

	ring chan struct{} // WaitChange's doorbell (Ring)

	mu      sync.Mutex
	windows []*window
	logs    map[string][]string
	nextID  int
	pid     int
	calls   []string
	spawned map[string]int
	active  int
	peak    int
	waiters []chan struct{}
}

type window struct {
	executor.Window
	b       Behaviour
	timer   *time.Timer
	spawned time.Time
}

var _ executor.Machine = (*Machine)(nil)

// New returns a fake machine called name.
func New(name string) *Machine {
	return &Machine{name: name, logs: map[string][]string{}, spawned: map[string]int{}, pid: 1000, Containers: map[string]bool{},
		ring: make(chan struct{}, 1)}
}

var _ executor.Notifier = (*Machine)(nil)

// Ring wakes a WaitChange, as a change by a launcher would.
func (m *Machine) Ring() {
	select {
	case m.ring <- struct{}{}:
	default:
	}
}

// WaitChange returns at the next Ring (or when ctx ends).
func (m *Machine) WaitChange(ctx context.Context) error {
	select {
	case <-m.ring:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restarted records a restart of the running process in name's window,
// as the pane's restart loop does, after an exit with code.
func (m *Machine) Restarted(name string, code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.windows {
		if w.Name == name && !w.Dead {
			w.Marks.Restarts.Count++
			w.Marks.Restarts.LastExit = code
			w.Marks.Restarts.Last = time.Now().UnixMilli()
		}
	}
}

func (m *Machine) record(format string, args ...any) {
	m.calls = append(m.calls, fmt.Sprintf(format, args...))
}

// Calls returns the recorded calls ("spawn web", "signal web INT", …).
func (m *Machine) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

// Spawned returns how many times name was spawned.
func (m *Machine) Spawned(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spawned[name]
}

// PeakAlive is the highest number of processes alive at once.
func (m *Machine) PeakAlive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

// AddForeign adds a window launcher does not own.
func (m *Machine) AddForeign(session, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	m.pid++
	m.windows = append(m.windows, &window{Window: executor.Window{Session: session, ID: fmt.Sprintf("@%d", m.nextID), Name: name, PanePID: m.pid}})
}

// Adopt marks a foreign window as launcher's and writes the note to its
// log.
func (m *Machine) Adopt(ctx context.Context, target executor.Window, spec executor.AdoptSpec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("adopt %s", target.Name)
	for _, w := range m.windows {
		if w.ID == target.ID {
			w.Marks = spec.Marks
			w.Foreign = ""
			for _, l := range spec.Note {
				m.logs[spec.Marks.Log] = append(m.logs[spec.Marks.Log], "[2000-01-01 00:00:00.000] "+l)
			}
			return nil
		}
	}
	return fmt.Errorf("fake: no window %s", target.ID)
}

// Exit ends a running process now with code (as if it crashed).
func (m *Machine) Exit(name string, code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.windows {
		if w.Name == name && !w.Dead {
			m.die(w, code)
		}
	}
}

// Machine returns the machine name.
func (m *Machine) Machine() string { return m.name }

// Run is not used by the engine on a fake machine.
func (m *Machine) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	return executor.Result{}, fmt.Errorf("fake: Run %v", cmd.Args)
}

// Stream is not used by the engine on a fake machine.
func (m *Machine) Stream(ctx context.Context, cmd executor.Command) (executor.Stream, error) {
	return nil, fmt.Errorf("fake: Stream %v", cmd.Args)
}

// Snapshot returns the current windows.
func (m *Machine) Snapshot(ctx context.Context) (executor.Snapshot, error) {
	if m.BeforeSnapshot != nil {
		m.BeforeSnapshot()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := executor.Snapshot{Taken: time.Now()}
	if m.Ahead != 0 {
		snap.Clock = snap.Taken.Add(m.Ahead)
	}
	for _, w := range m.windows {
		snap.Windows = append(snap.Windows, w.Window)
	}
	return snap, nil
}

// Spawn starts a scripted process.
func (m *Machine) Spawn(ctx context.Context, spec executor.SpawnSpec) (executor.Window, error) {
	b := Behaviour{}
	if m.Behave != nil {
		b = m.Behave(spec)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("spawn %s", spec.Name)
	m.spawned[spec.Name]++
	m.pid++
	var w *window
	if spec.Replace != "" {
		for _, x := range m.windows {
			if x.ID == spec.Replace {
				w = x
			}
		}
		if w == nil || !w.Dead {
			return executor.Window{}, executor.ErrRaced
		}
	} else {
		m.nextID++
		w = &window{}
		w.ID = fmt.Sprintf("@%d", m.nextID)
		m.windows = append(m.windows, w)
	}
	w.Session, w.Name, w.PanePID, w.Dead, w.ExitKnown, w.ExitCode = spec.Session, spec.Name, m.pid, false, false, 0
	w.Marks = spec.Marks
	w.Marks.Managed = true
	if w.Marks.Log == "" {
		w.Marks.Log = "/fake/" + spec.Session + "/" + spec.Name + ".log"
	}
	w.b, w.spawned = b, time.Now()
	m.active++
	m.peak = max(m.peak, m.active)
	log := w.Marks.Log
	m.logs[log] = append(m.logs[log], "[2000-01-01 00:00:00.000] "+executor.StartLine(spec.Name, spec.Marks.Tag))
	for _, l := range b.Output {
		m.logs[log] = append(m.logs[log], "[2000-01-01 00:00:00.000] "+l)
	}
	m.notify()
	for _, tl := range b.Later {
		ww, line := w, tl.Line
		time.AfterFunc(tl.After, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if !ww.Dead && ww.Marks.Log == log {
				m.logs[log] = append(m.logs[log], "[2000-01-01 00:00:00.000] "+line)
				m.notify()
			}
		})
	}
	if b.ExitAfter > 0 {
		ww := w
		w.timer = time.AfterFunc(b.ExitAfter, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if !ww.Dead {
				m.die(ww, ww.b.ExitCode)
			}
		})
	}
	return w.Window, nil
}

// die marks w dead with code; m.mu is held.
func (m *Machine) die(w *window, code int) {
	w.Dead, w.ExitKnown, w.ExitCode = true, true, code
	m.active--
	m.logs[w.Marks.Log] = append(m.logs[w.Marks.Log], "[2000-01-01 00:00:00.000] "+executor.ExitLine(w.Name, code, w.Marks.Tag))
	if w.timer != nil {
		w.timer.Stop()
	}
	m.notify()
}

func (m *Machine) notify() {
	for _, c := range m.waiters {
		close(c)
	}
	m.waiters = nil
}

// SetMarks updates marks.
func (m *Machine) SetMarks(ctx context.Context, id string, u executor.MarkUpdate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.windows {
		if w.ID != id {
			continue
		}
		m.apply(&w.Marks, u)
		return nil
	}
	return fmt.Errorf("fake: no window %s", id)
}

// Clock is the machine's wall clock now.
func (m *Machine) Clock() time.Time { return time.Now().Add(m.Ahead) }

// apply makes a mark update, as the tmux machine does.
func (m *Machine) apply(mk *executor.Marks, u executor.MarkUpdate) {
	if u.Op != nil {
		mk.Op = *u.Op
	}
	if u.Ready != nil {
		mk.Ready = *u.Ready
		if mk.Ready {
			mk.ReadyAt = m.Clock().UnixMilli()
		}
	}
}

// Signal delivers a signal according to the process's behaviour.
func (m *Machine) Signal(ctx context.Context, target executor.Window, sig executor.Signal, set executor.MarkUpdate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("signal %s %s", target.Name, sig)
	for _, w := range m.windows {
		if w.ID != target.ID {
			continue
		}
		m.apply(&w.Marks, set)
		if w.Dead {
			return nil
		}
		if (sig == executor.SIGINT || sig == executor.SIGQUIT) && time.Since(w.spawned) < w.b.StartupDelay {
			return executor.ErrNotStarted
		}
		switch {
		case sig == executor.SIGINT && !w.b.IgnoreInt:
			m.die(w, 130)
		case sig == executor.SIGQUIT && !w.b.IgnoreInt:
			m.die(w, 131)
		case sig == executor.SIGTERM && !w.b.IgnoreTerm:
			m.die(w, 143)
		case sig == executor.SIGKILL:
			m.die(w, 137)
		}
		return nil
	}
	return fmt.Errorf("fake: no window %s", target.ID)
}

// CloseWindow removes a window.
func (m *Machine) CloseWindow(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("close %s", id)
	for i, w := range m.windows {
		if w.ID == id {
			if !w.Dead {
				m.die(w, 129)
			}
			m.windows = append(m.windows[:i], m.windows[i+1:]...)
			return nil
		}
	}
	return nil
}

// Exec answers with Check.
func (m *Machine) Exec(ctx context.Context, spec executor.ExecSpec) (executor.Result, error) {
	m.mu.Lock()
	m.record("exec %s", spec.Script)
	m.mu.Unlock()
	if m.Check != nil {
		return m.Check(spec), nil
	}
	return executor.Result{}, nil
}

// CheckContainer consults Containers.
func (m *Machine) CheckContainer(ctx context.Context, name string) error {
	if !m.Containers[name] {
		return fmt.Errorf("container %q on machine %s is not running", name, m.name)
	}
	return nil
}

// LogPath returns a fake path.
func (m *Machine) LogPath(ctx context.Context, session, name string) (string, error) {
	return "/fake/" + session + "/" + name + ".log", nil
}

// LogHead returns the fake log's size (in lines) and last n lines.
func (m *Machine) LogHead(ctx context.Context, path string, n int) (int64, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lines := m.logs[path]
	size := int64(0)
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	if n > len(lines) {
		n = len(lines)
	}
	return size, append([]string(nil), lines[len(lines)-n:]...), nil
}

// FollowLog streams the fake log from a byte offset until closed.
func (m *Machine) FollowLog(ctx context.Context, path string, offset int64) (executor.Stream, error) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer pw.Close()
		pos := int64(0)
		idx := 0
		for {
			m.mu.Lock()
			lines := m.logs[path]
			var out []string
			for ; idx < len(lines); idx++ {
				l := lines[idx] + "\n"
				if pos >= offset {
					out = append(out, l)
				}
				pos += int64(len(l))
			}
			wake := make(chan struct{})
			m.waiters = append(m.waiters, wake)
			m.mu.Unlock()
			if len(out) > 0 {
				if _, err := io.WriteString(pw, strings.Join(out, "")); err != nil {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	}()
	return &stream{r: pr, cancel: cancel}, nil
}

// ReadLog streams what q selects of the fake log (it never rotates).
func (m *Machine) ReadLog(ctx context.Context, path string, q executor.LogQuery) (executor.Stream, error) {
	m.mu.Lock()
	lines := executor.FilterLog(m.logs[path], q, time.Now())
	m.mu.Unlock()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		_, _ = io.WriteString(pw, b.String())
		pw.Close()
		<-ctx.Done()
	}()
	return &stream{r: pr, cancel: cancel}, nil
}

type stream struct {
	r      *io.PipeReader
	cancel context.CancelFunc
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *stream) Wait() error                { return nil }
func (s *stream) Close() error               { s.cancel(); return s.r.Close() }

// Processes returns one entry per live window.
func (m *Machine) Processes(ctx context.Context) ([]executor.ProcessInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []executor.ProcessInfo
	for _, w := range m.windows {
		if !w.Dead {
			out = append(out, executor.ProcessInfo{PID: w.PanePID, PPID: 1, Args: w.Name})
		}
	}
	return out, nil
}

// AttachCommand is not meaningful on a fake machine.
func (m *Machine) AttachCommand(session, windowID, view string) []string { return nil }

// Close does nothing.
func (m *Machine) Close() error { return nil }

// Tagged reports no process outside the fake windows.
func (m *Machine) Tagged(ctx context.Context) ([]executor.TaggedProcess, error) { return nil, nil }

// SignalTagged has nothing to signal outside the fake windows.
func (m *Machine) SignalTagged(ctx context.Context, tags []string, sig executor.Signal) error {
	return nil
}

// Connector hands out fake machines by name, creating them on demand.
type Connector struct {
	mu       sync.Mutex
	Machines map[string]*Machine
	// Down lists machines that are unreachable.
	Down map[string]bool
	// Setup is applied to each machine created on demand.
	Setup func(*Machine)
}

// NewConnector returns a connector with no machines yet.
func NewConnector() *Connector {
	return &Connector{Machines: map[string]*Machine{}, Down: map[string]bool{}}
}

// SetDown makes a machine unreachable (or reachable again) while others
// use the connector.
func (c *Connector) SetDown(name string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Down[name] = down
}

// Machine returns (or creates) the fake machine called name.
func (c *Connector) Machine(ctx context.Context, name string) (executor.Machine, error) {
	return c.Get(name)
}

// Get is Machine with the concrete type.
func (c *Connector) Get(name string) (*Machine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Down[name] {
		return nil, &executor.UnavailableError{Machine: name, Op: "connect", Err: fmt.Errorf("connection refused")}
	}
	m := c.Machines[name]
	if m == nil {
		m = New(name)
		if c.Setup != nil {
			c.Setup(m)
		}
		c.Machines[name] = m
	}
	return m, nil
}
