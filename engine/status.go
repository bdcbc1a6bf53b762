package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// State is the state of a process as `status` reports it. The names are a
// stable interface (scripts parse them).
type State string

// States, see README: READY means alive and its ready check passed (or it
// has none); a clean exit (0, 130, 143) is STOPPED, any other exit DEAD.
const (
	StateStopped     State = "STOPPED"
	StateStarting    State = "STARTING"
	StateRunning     State = "RUNNING"
	StateReady       State = "READY"
	StateStopping    State = "STOPPING"
	StateDead        State = "DEAD"
	StateConflict    State = "CONFLICT"
	StateUnavailable State = "UNAVAILABLE"
	// StateRestarting: the process exited and its restart policy will
	// start it again after a delay (the pane's loop waits).
	StateRestarting State = "RESTARTING"
	// StateOrphaned: no live window, but processes of one of its runs
	// (found by their LAUNCHER_TAG) still run: a daemon that escaped the
	// pane, or children that outlived a killed tmux server.
	StateOrphaned State = "ORPHANED"
)

// Status is one row of `status` (the faces give it their output format).
type Status struct {
	Process  string
	Session  string
	Machine  string
	State    State
	PID      *int
	ExitCode *int
	// Error explains CONFLICT, UNAVAILABLE and ORPHANED.
	Error string
	// Orphans are the pids of processes of an earlier run (or of a window
	// that is gone) that still run.
	Orphans []int
	// Started is when the window's run started (from its mark, in its
	// machine's clock); Age is how long ago, by that clock too, so that a
	// viewer whose clock is off the machine's still reads the right age.
	// Window is the window itself, for commands that act on it.
	Started time.Time
	Age     time.Duration
	Window  *executor.Window
	// Restarts counts the restarts of the window's run by its restart
	// policy; LastRestart is when the last one happened and LastExit the
	// exit code that caused it (nil before the first).
	Restarts    int
	LastRestart time.Time
	LastExit    *int
	// ConfigChanged: the window runs a command other than the one the
	// config renders now for the variants and params it was started with
	// (Request): a restart with Request applies the config. Only Status
	// looks (not WindowStates).
	ConfigChanged bool
	Request       config.Request
}

// CleanExit reports whether an exit code means a normal stop.
func CleanExit(code int) bool { return code == 0 || code == 130 || code == 143 }

// stateOf derives a process's state from its window. The times in its
// marks are in the machine's clock, so they are read against it.
func (e *Engine) stateOf(snap executor.Snapshot, p *config.Process, now time.Time) Status {
	now = now.Add(snap.Offset())
	return deriveState(snap, p, now, func(m opMark) bool { return m.live(e.owner, now) })
}

// deriveState is the state of p in one listing of its machine's windows,
// at time now (the machine's clock); opLive tells whether the launcher
// that wrote an op mark may still run. It is a pure function of these:
// every state rule is a row of TestDeriveState.
func deriveState(snap executor.Snapshot, p *config.Process, now time.Time, opLive func(opMark) bool) Status {
	st := Status{Process: p.Name, Session: p.Session, Machine: p.Machine, State: StateStopped}
	w, err := findWindow(snap, p)
	if err != nil {
		st.State, st.Error = StateConflict, err.Error()
		var ce *ConflictError
		if errors.As(err, &ce) && ce.Window != nil && !ce.Window.Dead {
			pid := ce.Window.PanePID
			st.PID = &pid
		}
		return st
	}
	if w == nil {
		return st
	}
	st.Window = w
	if w.Marks.Started > 0 {
		st.Started = time.UnixMilli(w.Marks.Started)
		st.Age = max(0, now.Sub(st.Started))
	}
	op, opOK := parseOp(w.Marks.Op)
	rm := w.Marks.Restarts
	if st.Restarts = rm.Count; rm.Count > 0 {
		st.LastRestart = time.UnixMilli(rm.Last)
		c := rm.LastExit
		st.LastExit = &c
	}
	if w.Dead && rm.GaveUp != "" && !(opOK && op.Kind == "stopping") {
		if w.ExitKnown {
			c := w.ExitCode
			st.ExitCode = &c
		}
		st.State, st.Error = StateDead, rm.GaveUp
		return st
	}
	if w.Dead {
		if w.ExitKnown {
			c := w.ExitCode
			st.ExitCode = &c
		}
		if w.ExitKnown && CleanExit(w.ExitCode) || op.Kind == "stopping" {
			// A clean exit, or the end of a stop launcher asked for.
			st.State = StateStopped
		} else {
			st.State = StateDead
		}
		return st
	}
	pid := w.PanePID
	st.PID = &pid
	if opOK && opLive(op) {
		if op.Kind == "stopping" {
			st.State = StateStopping
		} else {
			st.State = StateStarting
		}
		return st
	}
	if rm.BackoffUntil > 0 {
		c := rm.BackoffExit
		st.ExitCode = &c
		st.State = StateRestarting
		st.Error = fmt.Sprintf("exited with code %d; restart %d in %s", c, rm.Count+1, max(0, time.UnixMilli(rm.BackoffUntil).Sub(now).Round(100*time.Millisecond)))
		return st
	}
	if w.Marks.Ready {
		st.State = StateReady
	} else {
		st.State = StateRunning
	}
	return st
}

// Status reports the state of the named processes (all when empty), in
// config order. Processes are grouped by machine, with one window listing
// per machine and all machines queried concurrently; an unreachable
// machine yields UNAVAILABLE rows, not an error. A process with no live
// window is ORPHANED when processes of one of its runs still run: that
// takes a scan of the machine's processes, made only when some row has no
// live window (a running robot's status stays one listing per machine).
func (e *Engine) Status(ctx context.Context, names []string) ([]Status, error) {
	return e.status(ctx, names, true, time.Time{})
}

// WindowStates is Status from the window listings alone (no ORPHANED): for
// frequent polls (the monitor, waits, dependency checks, a mon pane waiting
// for its window), which only ask whether a window lives.
func (e *Engine) WindowStates(ctx context.Context, names []string) ([]Status, error) {
	return e.status(ctx, names, false, time.Time{})
}

// status reads the states of names from listings started at or after
// `after` (zero: now).
func (e *Engine) status(ctx context.Context, names []string, orphans bool, after time.Time) ([]Status, error) {
	procs, err := e.selectProcs(names)
	if err != nil {
		return nil, err
	}
	byMachine := map[string][]int{}
	for i, p := range procs {
		byMachine[p.Machine] = append(byMachine[p.Machine], i)
	}
	out := make([]Status, len(procs))
	var wg sync.WaitGroup
	for machine, idx := range byMachine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, snaps, err := e.machine(ctx, machine)
			var snap executor.Snapshot
			if err == nil {
				from := after
				if from.IsZero() {
					from = time.Now()
				}
				snap, err = snaps.get(ctx, from)
			}
			now := time.Now()
			windowless := false
			for _, i := range idx {
				p := procs[i]
				if err != nil {
					out[i] = Status{Process: p.Name, Session: p.Session, Machine: p.Machine, State: StateUnavailable, Error: err.Error()}
					continue
				}
				out[i] = e.stateOf(snap, p, now)
				windowless = windowless || mayBeOrphaned(out[i], p)
				if orphans {
					e.compareConfig(&out[i], p)
				}
			}
			if err != nil || !orphans || !windowless {
				return
			}
			tagged, err := m.Tagged(ctx)
			if err != nil {
				return // best effort: no scan, no orphans shown
			}
			for _, i := range idx {
				out[i] = withOrphans(ctx, out[i], procs[i], m, tagged)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// compareConfig sets st.Request and st.ConfigChanged from a live window's
// marks. A run whose request no longer renders (a variant removed from
// the config) counts as changed. A window without a request mark (made by
// an older launcher) is not judged: it may have been started with
// variants, and "restart to apply" without them would drop them.
func (e *Engine) compareConfig(st *Status, p *config.Process) {
	w := st.Window
	if w == nil || w.Dead || w.Marks.Hash == "" {
		return
	}
	req, known := parseRequestMark(w.Marks.Request)
	if !known {
		return
	}
	st.Request = req
	r, err := e.conf().ResolveOne(p, req)
	st.ConfigChanged = err != nil || r.Hash != w.Marks.Hash
}

// requestMark is the request mark of a run: its variants and params as
// JSON ("{}" for none, so that a window with no mark at all is known to
// come from an older launcher).
func requestMark(req config.Request) string {
	b, err := json.Marshal(struct {
		V []string          `json:"v,omitempty"`
		P map[string]string `json:"p,omitempty"`
	}{req.Variants, req.Params})
	if err != nil {
		return ""
	}
	return string(b)
}

// parseRequestMark reads a request mark; known is false when there is
// none or it does not parse.
func parseRequestMark(s string) (req config.Request, known bool) {
	var m struct {
		V []string          `json:"v"`
		P map[string]string `json:"p"`
	}
	if s == "" || json.Unmarshal([]byte(s), &m) != nil {
		return config.Request{}, false
	}
	return config.Request{Variants: m.V, Params: m.P}, true
}

func (e *Engine) selectProcs(names []string) ([]*config.Process, error) {
	if len(names) == 0 {
		return e.conf().Processes, nil
	}
	var out []*config.Process
	seen := map[string]bool{}
	for _, n := range names {
		p, err := e.conf().Lookup(n)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// orphansOf are the pids (and run tags) of p's processes that do not
// belong to its live window's run. logPath, called only when a candidate
// is found, scopes them to this launcher's state directory (another one's
// processes on the machine are not ours).
func orphansOf(p *config.Process, w *executor.Window, logPath func() string, tagged []executor.TaggedProcess) (pids []int, tags []string) {
	live := ""
	if w != nil && !w.Dead {
		live = w.Marks.Tag
	}
	seen := map[string]bool{}
	for _, tp := range tagged {
		// concert_launcher's command lines do not say the session.
		if tp.Session != p.Session && tp.Foreign == "" || tp.Process != p.Name || tp.Tag == live {
			continue
		}
		if lp := logPath(); tp.Log != "" && lp != "" && tp.Log != lp {
			continue
		}
		pids = append(pids, tp.PID)
		if !seen[tp.Tag] {
			seen[tp.Tag] = true
			tags = append(tags, tp.Tag)
		}
	}
	return pids, tags
}

// logPathOf returns a memoised lookup of p's log path on m.
func logPathOf(ctx context.Context, m executor.Machine, p *config.Process) func() string {
	var path string
	var done bool
	return func() string {
		if !done {
			path, _ = m.LogPath(ctx, p.Session, p.Name)
			done = true
		}
		return path
	}
}

// mayBeOrphaned reports whether st is a row whose processes may have
// outlived its window (a process with no live window; a one-shot's daemon
// that escaped with setsid too).
func mayBeOrphaned(st Status, p *config.Process) bool {
	return st.State == StateStopped || st.State == StateDead
}

// withOrphans marks st ORPHANED when p has no live window but processes of
// one of its runs still run (status never says STOPPED then).
func withOrphans(ctx context.Context, st Status, p *config.Process, m executor.Machine, tagged []executor.TaggedProcess) Status {
	if !mayBeOrphaned(st, p) {
		return st
	}
	pids, tags := orphansOf(p, st.Window, logPathOf(ctx, m, p), tagged)
	if len(pids) == 0 {
		return st
	}
	st.Orphans = pids
	st.State = StateOrphaned
	st.Error = fmt.Sprintf("processes of %s still run (pids %s): `launcher kill %s` ends them", earlierRun(tags), joinInts(pids), p.Name)
	return st
}

// earlierRun says whose runs tags are: ours, or concert_launcher's that
// outlived their window.
func earlierRun(tags []string) string {
	for _, t := range tags {
		if strings.HasPrefix(t, executor.ConcertLauncher+":") {
			return "a run of concert_launcher that outlived its window"
		}
	}
	return "an earlier run"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}
