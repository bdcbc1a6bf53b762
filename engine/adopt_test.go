package engine

import (
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// Adopt checks its whole plan before acting: a named process without a
// foreign window (or a machine down) changes nothing; then each foreign
// window becomes launcher's with its pid, and one launcher already owns is
// left alone.
func TestAdoptPlansThenActs(t *testing.T) {
	e, conn, _ := newTestEngine(t, `
context: {session: s}
web: {cmd: web}
db: {cmd: db}
mine: {cmd: mine}
none: {cmd: none}
far: {cmd: far, machine: robot@10.0.0.2}
`)
	m := local(t, conn)
	m.AddForeign("s", "web")
	m.AddForeign("s", "db")
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"mine"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	conn.Down["robot@10.0.0.2"] = true
	for _, names := range [][]string{{"web", "none"}, {"web", "far"}} {
		_, err := e.Adopt(ctx, names, false)
		if !IsPlanRefusal(err) {
			t.Errorf("adopt %v: %v", names, err)
		}
	}
	if strings.Contains(strings.Join(m.Calls(), "\n"), "adopt") {
		t.Fatalf("a refused adopt acted: %v", m.Calls())
	}
	sts, _ := e.Status(ctx, []string{"web"})
	webPID := *sts[0].PID
	got, err := e.Adopt(ctx, []string{"web", "db", "mine"}, false)
	if err != nil || len(got) != 2 || got[0].Process != "web" || got[0].PID != webPID || !got[0].Ready {
		t.Fatalf("adopt: %+v %v", got, err)
	}
	sts, _ = e.Status(ctx, []string{"web", "db", "mine"})
	for _, st := range sts {
		if st.State != StateReady {
			t.Errorf("%s after adopt: %s (%s)", st.Process, st.State, st.Error)
		}
	}
	if *sts[0].PID != webPID {
		t.Errorf("web's pid changed: %d → %d", webPID, *sts[0].PID)
	}
	// The log starts with the run's start line, then the note.
	snap, _ := m.Snapshot(ctx)
	w := snap.Find("s", "web")[0]
	head, lines, _ := m.LogHead(ctx, w.Marks.Log, 5)
	if head == 0 || len(lines) < 2 || !executor.IsStartLine(lines[0], w.Marks.Tag) || !strings.Contains(lines[1], "web adopted from another tool: pid") {
		t.Errorf("log: %q", lines)
	}
	if _, err := e.Adopt(ctx, nil, true); !IsPlanRefusal(err) {
		t.Errorf("adopt --all with a machine down: %v", err)
	}
	conn.Down["robot@10.0.0.2"] = false
	if again, err := e.Adopt(ctx, nil, true); err != nil || len(again) != 0 {
		t.Errorf("adopt --all with nothing left: %+v %v", again, err)
	}
}
