package engine

import (
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
)

// Issue 16, `launcher analyze`: the critical chain follows, from the
// target, the dependency that became ready last before each start.
func TestCriticalChain(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ts := []Timing{
		{Process: "roscore", Started: at(0), Ready: at(1200)},
		{Process: "driver", Started: at(1250), Ready: at(4000), Depends: []string{"roscore"}},
		{Process: "tf", Started: at(1250), Ready: at(1500), Depends: []string{"roscore"}},
		{Process: "ctrl", Started: at(4050), Ready: at(4800), Depends: []string{"driver", "tf"}},
		// Restarted long after the bring-up: it did not hold ctrl up.
		{Process: "late", Started: at(90000), Ready: at(91000)},
		{Process: "ui", Started: at(4900), Depends: []string{"ctrl", "late"}},
	}
	got := CriticalChain(ts, "ctrl")
	want := []ChainLink{{"ctrl", true, 4800 * time.Millisecond, 750 * time.Millisecond},
		{"driver", true, 4000 * time.Millisecond, 2750 * time.Millisecond}, {"roscore", true, 1200 * time.Millisecond, 1200 * time.Millisecond}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("link %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Not ready yet: the chain still shows what it waited for.
	if got := CriticalChain(ts, "ui"); len(got) != 4 || got[0].Process != "ui" || got[0].Ready || got[1].Process != "ctrl" {
		t.Errorf("ui: %+v", got)
	}
	if got := CriticalChain(ts, "nosuch"); got != nil {
		t.Errorf("unknown: %+v", got)
	}
}

// The ready time is recorded on the window when the check passes.
func TestTimingsFromMarks(t *testing.T) {
	e, _, _ := newTestEngine(t, "context: {session: s}\na: {cmd: a, ready_check: \"true\"}\nb: {cmd: b, depends: [a]}\n")
	before := time.Now().Add(-time.Second)
	if err := e.Start(ctxT(t), []string{"b"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	ts, err := e.Timings(ctxT(t))
	if err != nil || len(ts) != 2 {
		t.Fatalf("%+v %v", ts, err)
	}
	for _, tm := range ts {
		if tm.Started.Before(before) || tm.Ready.Before(tm.Started) || tm.State != StateReady {
			t.Errorf("%+v", tm)
		}
	}
	if ts[1].Process != "b" || len(ts[1].Depends) != 1 {
		t.Errorf("%+v", ts)
	}
}
