package engine

import (
	"context"
	"sort"
	"time"
)

// Timing is how long a process's current run took from its start to
// ready, as its window's marks tell (`launcher analyze`).
type Timing struct {
	Process string    `json:"process"`
	Machine string    `json:"machine"`
	State   State     `json:"state"`
	Started time.Time `json:"started"`
	// Ready is zero while the run is not ready, or when the window was
	// made by an older launcher that did not record it.
	Ready   time.Time `json:"ready"`
	Depends []string  `json:"depends"`
}

// Took is the time from start to ready (0 when not known).
func (t Timing) Took() time.Duration {
	if t.Ready.IsZero() || t.Started.IsZero() {
		return 0
	}
	return max(t.Ready.Sub(t.Started), 0)
}

// Timings reads the start and ready times of every process of the
// config that has a window (one listing per machine).
func (e *Engine) Timings(ctx context.Context) ([]Timing, error) {
	sts, err := e.WindowStates(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []Timing
	for _, st := range sts {
		if st.Window == nil || st.Window.Marks.Started == 0 {
			continue
		}
		t := Timing{Process: st.Process, Machine: st.Machine, State: st.State, Started: time.UnixMilli(st.Window.Marks.Started)}
		if st.Window.Marks.Ready && st.Window.Marks.ReadyAt > 0 {
			t.Ready = time.UnixMilli(st.Window.Marks.ReadyAt)
		}
		if p := e.conf().Process(st.Process); p != nil {
			t.Depends = p.Depends
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// ChainLink is one process of a critical chain: ready At after the chain's
// first start, having taken Took from its own start.
type ChainLink struct {
	Process string        `json:"process"`
	Ready   bool          `json:"ready"`
	At      time.Duration `json:"at"`
	Took    time.Duration `json:"took"`
}

// CriticalChain is what held target up, as systemd-analyze critical-chain
// shows it: target, then the dependency that became ready last before
// target started (the one it waited for), then that one's, and so on. The
// first link is target; times are from the start of the chain's root.
func CriticalChain(ts []Timing, target string) []ChainLink {
	by := map[string]Timing{}
	for _, t := range ts {
		by[t.Process] = t
	}
	var chain []Timing
	seen := map[string]bool{}
	cur, ok := by[target]
	for ok && !seen[cur.Process] {
		seen[cur.Process] = true
		chain = append(chain, cur)
		var gate Timing
		found := false
		for _, d := range cur.Depends {
			dt, ok := by[d]
			// A dependency ready after this start did not hold it up (an
			// earlier bring-up's window, restarted since).
			if !ok || dt.Ready.IsZero() || dt.Ready.After(cur.Started.Add(time.Second)) {
				continue
			}
			if !found || dt.Ready.After(gate.Ready) {
				gate, found = dt, true
			}
		}
		cur, ok = gate, found
	}
	if len(chain) == 0 {
		return nil
	}
	t0 := chain[len(chain)-1].Started
	out := make([]ChainLink, 0, len(chain))
	for _, t := range chain {
		l := ChainLink{Process: t.Process, Took: t.Took()}
		if !t.Ready.IsZero() {
			l.Ready, l.At = true, t.Ready.Sub(t0)
		}
		out = append(out, l)
	}
	return out
}
