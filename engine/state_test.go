package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// TestDeriveState: every rule of the state a window shows, one row each,
// with the race or fault that made the rule (as the git log names it).
func TestDeriveState(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	p := &config.Process{Name: "drv", Session: "robot", Machine: "local"}
	managed := func(mod func(w *executor.Window)) executor.Window {
		w := executor.Window{Session: "robot", ID: "@1", Name: "drv", PanePID: 42,
			Marks: executor.Marks{Managed: true, Name: "drv", Tag: "t1", Started: now.Add(-time.Minute).UnixMilli()}}
		if mod != nil {
			mod(&w)
		}
		return w
	}
	dead := func(code int) func(w *executor.Window) {
		return func(w *executor.Window) { w.Dead, w.ExitKnown, w.ExitCode = true, true, code }
	}
	op := func(kind string) string { return Owner{Host: "h", PID: 7, Start: "9"}.mark(kind, now) }
	live := func(opMark) bool { return true }
	gone := func(opMark) bool { return false }
	rows := []struct {
		name   string
		wins   []executor.Window
		opLive func(opMark) bool
		want   State
		exit   int // -1: none
		errHas string
	}{
		{"no window: never started, or its one-shot succeeded", nil, live, StateStopped, -1, ""},
		{"a window of another session is not ours", []executor.Window{{Session: "other", Name: "drv", Marks: executor.Marks{Managed: true, Name: "drv"}}}, live, StateStopped, -1, ""},
		{"a foreign window of that name is a conflict, never touched",
			[]executor.Window{{Session: "robot", ID: "@9", Name: "drv"}}, live, StateConflict, -1, "unmanaged"},
		{"two windows claim it: ambiguous, refused",
			[]executor.Window{managed(nil), {Session: "robot", ID: "@9", Name: "drv"}}, live, StateConflict, -1, "ambiguous"},
		{"renamed by a title escape: found by its @launcher_name mark",
			[]executor.Window{managed(func(w *executor.Window) { w.Name = "vim" })}, live, StateRunning, -1, ""},
		{"alive, no ready mark", []executor.Window{managed(nil)}, live, StateRunning, -1, ""},
		{"alive and ready", []executor.Window{managed(func(w *executor.Window) { w.Marks.Ready = true })}, live, StateReady, -1, ""},
		{"exit 0 is a clean stop", []executor.Window{managed(dead(0))}, live, StateStopped, 0, ""},
		{"exit 130 (SIGINT) is a clean stop", []executor.Window{managed(dead(130))}, live, StateStopped, 130, ""},
		{"exit 143 (SIGTERM) is a clean stop", []executor.Window{managed(dead(143))}, live, StateStopped, 143, ""},
		{"another exit is DEAD with its code", []executor.Window{managed(dead(2))}, live, StateDead, 2, ""},
		{"an exit launcher asked for (a shell loop ends 1 on SIGINT) is a clean stop",
			[]executor.Window{managed(func(w *executor.Window) { dead(1)(w); w.Marks.Op = op("stopping") })}, gone, StateStopped, 1, ""},
		{"a dead pane whose exit is unknown is DEAD",
			[]executor.Window{managed(func(w *executor.Window) { w.Dead = true })}, live, StateDead, -1, ""},
		{"a live launcher's start shows STARTING", []executor.Window{managed(func(w *executor.Window) { w.Marks.Op = op("starting") })}, live, StateStarting, -1, ""},
		{"a start whose launcher died (SIGKILL mid bring-up) leaves no stale STARTING",
			[]executor.Window{managed(func(w *executor.Window) { w.Marks.Op = op("starting") })}, gone, StateRunning, -1, ""},
		{"a live launcher's stop shows STOPPING", []executor.Window{managed(func(w *executor.Window) { w.Marks.Op = op("stopping") })}, live, StateStopping, -1, ""},
		{"a stop whose launcher died leaves no stale STOPPING",
			[]executor.Window{managed(func(w *executor.Window) { w.Marks.Op = op("stopping"); w.Marks.Ready = true })}, gone, StateReady, -1, ""},
		{"a garbled op mark is ignored", []executor.Window{managed(func(w *executor.Window) { w.Marks.Op = "starting x" })}, live, StateRunning, -1, ""},
		{"the restart loop waits: RESTARTING, with the exit and when",
			[]executor.Window{managed(func(w *executor.Window) {
				w.Marks.Restarts = executor.RestartMarks{Count: 2, BackoffUntil: now.Add(3 * time.Second).UnixMilli(), BackoffExit: 1}
			})}, live, StateRestarting, 1, "restart 3 in 3s"},
		{"the restart loop gave up: DEAD with the reason",
			[]executor.Window{managed(func(w *executor.Window) { dead(1)(w); w.Marks.Restarts.GaveUp = "max_restarts 5 within 1m0s" })}, live, StateDead, 1, "max_restarts"},
		{"a stop while the loop gave up is a clean stop",
			[]executor.Window{managed(func(w *executor.Window) {
				dead(1)(w)
				w.Marks.Restarts.GaveUp = "max_restarts 5"
				w.Marks.Op = op("stopping")
			})}, gone, StateStopped, 1, ""},
	}
	for _, r := range rows {
		st := deriveState(executor.Snapshot{Windows: r.wins}, p, now, r.opLive)
		exit := -1
		if st.ExitCode != nil {
			exit = *st.ExitCode
		}
		if st.State != r.want || exit != r.exit || !strings.Contains(st.Error, r.errHas) {
			t.Errorf("%s: got %s exit %d %q, want %s exit %d %q", r.name, st.State, exit, st.Error, r.want, r.exit, r.errHas)
		}
	}
}
