package tmux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
)

// gateHost holds the first tmux invocation whose arguments contain marker
// until released, and says when it is held.
type gateHost struct {
	executor.Host
	mu      sync.Mutex
	marker  string
	held    chan struct{}
	release chan struct{}
}

func (g *gateHost) arm(marker string) {
	g.mu.Lock()
	g.marker, g.release = marker, make(chan struct{})
	g.mu.Unlock()
}

func (g *gateHost) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	g.mu.Lock()
	hold := g.marker != "" && len(cmd.Args) > 0 && strings.HasSuffix(cmd.Args[0], "tmux") && strings.Contains(strings.Join(cmd.Args, " "), g.marker)
	release := g.release
	if hold {
		g.marker = ""
	}
	g.mu.Unlock()
	if hold {
		g.held <- struct{}{}
		<-release
	}
	return g.Host.Run(ctx, cmd)
}

// envFiles lists the env files of run tag still in the state directory.
func envFiles(t *testing.T, m *Machine, tag string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(m.scripts.runDir, tag+"-*.env"))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// A spawn cancelled (Ctrl-C) while its tmux commands wait behind another
// invocation used to remove its env file and return, and its queued
// commands still made the window later: a pane that could not read its env
// file, DEAD with exit 126 (TestCtrlCMidBringUpLeavesNoHalfMadeWindow,
// under load). A queued request is now withdrawn (no window), and one
// already under way keeps its env file (the window it makes starts).
func TestCancelledSpawnNeverLeavesABrokenPane(t *testing.T) {
	m := newLocal(t)
	defer func(g time.Duration) { spawnGrace = g }(spawnGrace)
	spawnGrace = 50 * time.Millisecond
	bg := context.Background()
	first, err := m.Spawn(bg, executor.SpawnSpec{Session: "c", Name: "first", Script: "sleep 300", Marks: executor.Marks{Tag: "tfirst"}})
	if err != nil {
		t.Fatal(err)
	}
	gate := &gateHost{Host: m.Host, held: make(chan struct{})}
	m.Host = gate

	// Queued behind a held invocation: withdrawn, never made.
	gate.arm("LTOK-occupy")
	occupied := make(chan error, 1)
	go func() {
		_, err := m.batch(bg, [][]string{{"display-message", "-p", "LTOK-occupy"}})
		occupied <- err
	}()
	<-gate.held
	ctx, cancel := context.WithCancel(bg)
	spawned := make(chan error, 1)
	go func() {
		_, err := m.Spawn(ctx, executor.SpawnSpec{Session: "c", Name: "queued", Script: "sleep 300", Marks: executor.Marks{Tag: "tqueued"}})
		spawned <- err
	}()
	if !executortest.Poll(func() bool { return len(envFiles(t, m, "tqueued")) == 1 }) {
		t.Fatal("the queued spawn did not write its env file")
	}
	cancel()
	err = <-spawned
	var inFlight *inFlightError
	if !errors.Is(err, context.Canceled) || errors.As(err, &inFlight) {
		t.Fatalf("queued spawn after Ctrl-C: %v, want a plain cancellation", err)
	}
	gate.mu.Lock()
	close(gate.release)
	gate.mu.Unlock()
	if err := <-occupied; err != nil {
		t.Fatal(err)
	}
	// A barrier: once a later request has run, an earlier queued one has.
	if _, err := m.batch(bg, [][]string{{"display-message", "-p", "barrier"}}); err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot(bg)
	if err != nil {
		t.Fatal(err)
	}
	if ws := snap.Find("c", "queued"); len(ws) != 0 {
		t.Errorf("a withdrawn spawn made its window: %+v", ws)
	}
	if f := envFiles(t, m, "tqueued"); len(f) != 0 {
		t.Errorf("the withdrawn spawn left its env file: %v", f)
	}

	// Under way when cancelled: the window is made and starts.
	gate.arm("new-window")
	ctx, cancel = context.WithCancel(bg)
	go func() {
		_, err := m.Spawn(ctx, executor.SpawnSpec{Session: "c", Name: "flight", Script: "echo flying; sleep 300", Marks: executor.Marks{Tag: "tflight"}})
		spawned <- err
	}()
	<-gate.held
	cancel()
	err = <-spawned
	if !errors.As(err, &inFlight) || !errors.Is(err, context.Canceled) {
		t.Fatalf("spawn cancelled under way: %v, want an in-flight cancellation", err)
	}
	gate.mu.Lock()
	close(gate.release)
	gate.mu.Unlock()
	var w *executor.Window
	executortest.Eventually(t, "the window of the spawn under way runs its command", func() bool {
		snap, err := m.Snapshot(bg)
		if err != nil {
			return false
		}
		ws := snap.Find("c", "flight")
		if len(ws) != 1 {
			return false
		}
		w = &ws[0]
		log, _ := os.ReadFile(w.Marks.Log)
		return strings.Contains(string(log), "flying\n")
	})
	if w.Dead {
		t.Errorf("the window of the spawn under way is dead: %+v", w)
	}
	_ = m.Signal(bg, first, executor.SIGKILL, executor.MarkUpdate{})
	_ = m.Signal(bg, *w, executor.SIGKILL, executor.MarkUpdate{})
}

// A C-c that reaches the pane's shell just before it starts the command
// (the command line's `kill -INT $$` stands for one arriving then) ends
// the run with 130. bash used to catch it there and give exit 1, or drop
// it before an `exec`: the process ran on, the stop escalated to SIGTERM,
// and a run racing a kill said the process failed (TestRunAndKillRace).
func TestCtrlCJustBeforeTheCommandEndsTheRun(t *testing.T) {
	m := newLocal(t)
	bg := context.Background()
	for i, script := range []string{`kill -INT $$; echo not-stopped; sleep 300`, `kill -INT $$; exec sleep 300`} {
		// A window of its own each (a name reused at once may still be
		// held by the closing window).
		name := fmt.Sprintf("p%d", i)
		// The previous window was the server's last: a spawn while the
		// server exits is ErrRaced, and the caller (the engine) looks again.
		var w executor.Window
		var err error
		executortest.Eventually(t, "spawned "+name, func() bool {
			w, err = m.Spawn(bg, executor.SpawnSpec{Session: "int", Name: name, Script: script, Marks: executor.Marks{Tag: fmt.Sprintf("tint%d", i)}})
			if err != nil && !errors.Is(err, executor.ErrRaced) {
				t.Fatal(err)
			}
			return err == nil
		})
		var cur executor.Window
		executortest.Eventually(t, "the pane ends", func() bool {
			snap, err := m.Snapshot(bg)
			if err != nil {
				return false
			}
			ws := snap.Find("int", name)
			if len(ws) == 1 {
				cur = ws[0]
			}
			return len(ws) == 1 && ws[0].Dead
		})
		log, _ := os.ReadFile(w.Marks.Log)
		if !cur.ExitKnown || cur.ExitCode != 130 || strings.Contains(string(log), "not-stopped") {
			t.Errorf("%q: exit %d (known %v), want 130; log:\n%s", script, cur.ExitCode, cur.ExitKnown, log)
		}
		if err := m.CloseWindow(bg, cur.ID); err != nil {
			t.Fatal(err)
		}
	}
}
