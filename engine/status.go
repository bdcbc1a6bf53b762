package engine

import (
	"context"
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
	// Started is when the window's run started (from its mark); Window is
	// the window itself, for commands that act on it.
	Started time.Time
	Window  *executor.Window
}

// CleanExit reports whether an exit code means a normal stop.
func CleanExit(code int) bool { return code == 0 || code == 130 || code == 143 }

// stateOf derives a process's state from its window.
func (e *Engine) stateOf(snap executor.Snapshot, p *config.Process, now time.Time) Status {
	st := Status{Process: p.Name, Session: p.Session, Machine: p.Machine, State: StateStopped}
	w, err := findWindow(snap, p)
	if err != nil {
		st.State, st.Error = StateConflict, err.Error()
		return st
	}
	if w == nil {
		return st
	}
	st.Window = w
	if w.Marks.Started > 0 {
		st.Started = time.UnixMilli(w.Marks.Started)
	}
	op, opOK := parseOp(w.Marks.Op)
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
	if opOK && op.live(e.owner, now) {
		if op.Kind == "stopping" {
			st.State = StateStopping
		} else {
			st.State = StateStarting
		}
		return st
	}
	if w.Marks.Ready {
		st.State = StateReady
	} else {
		st.State = StateRunning
	}
	return st
}

// Status reports the state of the named processes (all when names is
// empty), in config order. Processes are grouped by machine, with one window
// listing per machine and all machines queried concurrently; an unreachable
// machine yields UNAVAILABLE rows, not an error.
func (e *Engine) Status(ctx context.Context, names []string) ([]Status, error) {
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
			var tagged []executor.TaggedProcess
			if err == nil {
				// The process scan runs beside the listing (same latency).
				tc := make(chan []executor.TaggedProcess, 1)
				go func() {
					t, _ := m.Tagged(ctx) // best effort: no scan, no orphans shown
					tc <- t
				}()
				snap, err = snaps.get(ctx, time.Now())
				tagged = <-tc
			}
			now := time.Now()
			for _, i := range idx {
				p := procs[i]
				if err != nil {
					out[i] = Status{Process: p.Name, Session: p.Session, Machine: p.Machine, State: StateUnavailable, Error: err.Error()}
					continue
				}
				var logPath string
				if len(tagged) > 0 {
					logPath, _ = m.LogPath(ctx, p.Session, p.Name)
				}
				out[i] = withOrphans(e.stateOf(snap, p, now), p, logPath, tagged)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *Engine) selectProcs(names []string) ([]*config.Process, error) {
	if len(names) == 0 {
		return e.cfg.Processes, nil
	}
	var out []*config.Process
	seen := map[string]bool{}
	for _, n := range names {
		p, err := e.cfg.Lookup(n)
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

// orphansOf are the pids of p's processes that do not belong to its live
// window's run.
func orphansOf(p *config.Process, w *executor.Window, logPath string, tagged []executor.TaggedProcess) (pids []int, tags []string) {
	live := ""
	if w != nil && !w.Dead {
		live = w.Marks.Tag
	}
	seen := map[string]bool{}
	for _, tp := range tagged {
		if tp.Session == p.Session && tp.Process == p.Name && tp.Tag != live && (tp.Log == "" || logPath == "" || tp.Log == logPath) {
			pids = append(pids, tp.PID)
			if !seen[tp.Tag] {
				seen[tp.Tag] = true
				tags = append(tags, tp.Tag)
			}
		}
	}
	return pids, tags
}

// withOrphans marks st ORPHANED when p has no live window but processes of
// one of its runs still run (status never says STOPPED then).
func withOrphans(st Status, p *config.Process, logPath string, tagged []executor.TaggedProcess) Status {
	if st.State == StateConflict || !p.Persistent && st.Window == nil {
		return st
	}
	pids, _ := orphansOf(p, st.Window, logPath, tagged)
	if len(pids) == 0 {
		return st
	}
	st.Orphans = pids
	msg := fmt.Sprintf("processes of an earlier run still run (pids %s): `launcher kill %s` ends them", joinInts(pids), p.Name)
	if st.State == StateStopped || st.State == StateDead {
		st.State, st.Error = StateOrphaned, msg
	}
	return st
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}
