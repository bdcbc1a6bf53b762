package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// Adopted is one window Adopt took over.
type Adopted struct {
	Process string `json:"process"`
	Session string `json:"session"`
	Machine string `json:"machine"`
	// Foreign is who started it ("concert_launcher", or "" when it cannot
	// be told).
	Foreign string `json:"started_by,omitempty"`
	// PID is the pane's process, which kept running (0 when it had ended).
	PID      int  `json:"pid,omitempty"`
	ExitCode *int `json:"exit_code,omitempty"`
	// Ready: its ready check passed at once (or it has none).
	Ready bool `json:"ready"`
	// Output is where its output before the adoption is, when known
	// (concert_launcher's NAME.stdout); Log is where it goes from now on.
	Output string `json:"earlier_output,omitempty"`
	Log    string `json:"log"`
}

// Adopt takes over the windows of the named processes (with all: of every
// process of the config that has one) that another tool started — a
// running concert_launcher, or anything that named a window like the
// process — without touching their processes: the same pid keeps running,
// the window gets launcher's marks, and its output goes to the process's
// log from now on. Then status, kill, restart and watch work on it.
//
// Plan, check, act: every named process must have exactly one such window,
// and every machine must answer, or nothing changes (a PlanError). A
// window launcher already owns is left alone.
func (e *Engine) Adopt(ctx context.Context, names []string, all bool) ([]Adopted, error) {
	if all {
		names = nil
		for _, p := range e.conf().Processes {
			names = append(names, p.Name)
		}
	}
	procs, err := e.selectProcs(names)
	if err != nil {
		return nil, err
	}
	type candidate struct {
		p *config.Process
		m executor.Machine
		w executor.Window
	}
	var (
		mu         sync.Mutex
		problems   []error
		candidates []candidate
		wg         sync.WaitGroup
	)
	byMachine := map[string][]*config.Process{}
	for _, p := range procs {
		byMachine[p.Machine] = append(byMachine[p.Machine], p)
	}
	for mach, ps := range byMachine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, snaps, err := e.machine(ctx, mach)
			var snap executor.Snapshot
			if err == nil {
				snap, err = snaps.get(ctx, time.Now())
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				problems = append(problems, err)
				return
			}
			for _, p := range ps {
				w, err := findWindow(snap, p)
				var ce *ConflictError
				switch {
				case errors.As(err, &ce) && ce.Window != nil:
					candidates = append(candidates, candidate{p, m, *ce.Window})
				case err != nil:
					problems = append(problems, err)
				case w == nil && !all:
					problems = append(problems, fmt.Errorf("%s: no window '%s:%s' on %s to adopt", p.Name, p.Session, p.Name, p.Machine))
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if len(problems) > 0 {
		return nil, &PlanError{Op: "adopt", Target: strings.Join(names, " "), Problems: dedupe(problems)}
	}
	set := map[string]bool{}
	for _, c := range candidates {
		set[c.p.Name] = true
	}
	order := inConfigOrder(e.conf(), set)
	if len(order) == 0 {
		return nil, nil
	}
	// The marks carry the command the config gives now (its hash): a
	// restart later runs that.
	plan, err := e.conf().Resolve(order, config.Request{})
	if err != nil {
		return nil, err
	}
	em := e.newEmitter(ctx)
	defer em.touch()
	var out []Adopted
	for _, name := range order {
		for _, c := range candidates {
			if c.p.Name != name {
				continue
			}
			a, err := e.adoptOne(ctx, em, plan.Get(name), c.m, c.w)
			if err != nil {
				return out, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// adoptOne takes over window w of r's process on m.
func (e *Engine) adoptOne(ctx context.Context, em emitter, r *config.Resolved, m executor.Machine, w executor.Window) (Adopted, error) {
	p := r.Process
	lk := e.lock(p.Machine, p.Session, p.Name)
	lk.Lock()
	defer lk.Unlock()
	a := Adopted{Process: p.Name, Session: p.Session, Machine: p.Machine, Foreign: w.Foreign}
	log, err := m.LogPath(ctx, p.Session, p.Name)
	if err != nil {
		return a, err
	}
	a.Log = log
	by := "another tool"
	if w.Foreign != "" {
		by = w.Foreign
	}
	tag := newTag()
	now := m.Clock()
	// Its hash is the config's for no variants or params: said so in the
	// request mark, so that a later edit of the config reads as one.
	marks := executor.Marks{Managed: true, Name: p.Name, Hash: r.Hash, Started: now.UnixMilli(), Tag: tag, Log: log, OneShot: !p.Persistent,
		Request: requestMark(config.Request{})}
	note := []string{executor.StartLine(p.Name, tag)}
	if w.Dead {
		if w.ExitKnown {
			c := w.ExitCode
			a.ExitCode = &c
		}
		note = append(note, fmt.Sprintf("[launcher] %s adopted from %s: its process had ended (run %s)", p.Name, by, tag))
	} else {
		a.PID = w.PanePID
		if tagged, err := m.Tagged(ctx); err == nil {
			for _, tp := range tagged {
				if tp.Foreign != "" && tp.PID == w.PanePID && tp.Output != "" {
					a.Output = tp.Output
					break
				}
			}
		}
		earlier := ""
		if a.Output != "" {
			earlier = "; its output before this line is in " + a.Output
		}
		note = append(note, fmt.Sprintf("[launcher] %s adopted from %s: pid %d kept running%s (run %s)", p.Name, by, w.PanePID, earlier, tag))
		// Ready at once when it has no check, or its shell check passes
		// now; otherwise the next `run` waits for it as for any start.
		switch {
		case r.ReadyCheck == "" && (p.ReadyCheck == nil || p.ReadyCheck.Kind == ""):
			marks.Ready = true
		case r.ReadyCheck != "":
			marks.Ready, _ = e.shellCheck(ctx, m, r, log, -1)
		}
		if marks.Ready {
			marks.ReadyAt = m.Clock().UnixMilli()
		}
	}
	a.Ready = marks.Ready
	if err := m.Adopt(ctx, w, executor.AdoptSpec{Marks: marks, Rotate: executor.LogRotation{MaxSize: r.LogRotation.MaxSize, Keep: r.LogRotation.Keep}, Note: note}); err != nil {
		return a, err
	}
	msg := fmt.Sprintf("adopted from %s", by)
	if !w.Dead {
		msg += fmt.Sprintf(" (pid %d kept running)", w.PanePID)
	}
	em.emit(Info, p, 0, "%s", msg)
	return a, nil
}
