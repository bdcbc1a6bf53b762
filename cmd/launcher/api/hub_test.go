package api

import (
	"testing"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor"
)

// A client whose queue is full is dropped at once; the others and the
// kept events are not affected, and a resume after a kept event replays
// exactly what followed it.
func TestHubDropsAFullClientAndReplays(t *testing.T) {
	h := newHub(4, 2, 1)
	slow, _, _ := h.subscribe(0, false)
	fast, _, _ := h.subscribe(0, false)
	for i := 0; i < 3; i++ {
		h.publish(map[string]int{"n": i})
		select {
		case <-fast.ch:
		default:
			t.Fatalf("the reading client missed event %d", i)
		}
	}
	select {
	case <-slow.gone.Done():
	default:
		t.Fatal("the client that did not read was not dropped")
	}
	if h.clientCount() != 1 {
		t.Errorf("%d clients, want 1", h.clientCount())
	}
	for i := 3; i < 10; i++ {
		h.publish(map[string]int{"n": i})
		<-fast.ch
	}
	// Kept: the last 4 (ids 7..10). Resuming after 8 gives 9 and 10.
	_, backlog, gap := h.subscribe(8, false)
	if gap || len(backlog) != 2 || backlog[0].id != 9 || string(backlog[1].data) != `{"n":9}` {
		t.Errorf("resume after 8: gap %v, %+v", gap, backlog)
	}
	// Resuming after an event no longer kept says so.
	if _, backlog, gap := h.subscribe(2, false); !gap || len(backlog) != 4 || backlog[0].id != 7 {
		t.Errorf("resume after 2: gap %v, %d events from %d", gap, len(backlog), backlog[0].id)
	}
	// ?replay=1 gives every kept event.
	if _, backlog, _ := h.subscribe(0, true); len(backlog) != 4 {
		t.Errorf("replay: %d events", len(backlog))
	}
}

func TestLoopbackChecks(t *testing.T) {
	for host, want := range map[string]bool{"127.0.0.1:8750": true, "localhost:1": true, "[::1]:80": true, "127.3.4.5": true,
		"evil.example:8750": false, "10.0.0.1:8750": false, "localhost.evil.example": false} {
		if loopbackHost(host) != want {
			t.Errorf("loopbackHost(%q) != %v", host, want)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:8750": true, "[::1]:1": true, "0.0.0.0:8750": false, ":8750": false, "192.168.1.2:80": false} {
		if IsLoopbackAddr(addr) != want {
			t.Errorf("IsLoopbackAddr(%q) != %v", addr, want)
		}
	}
}

// Issue 15, bug 1: ids grow across server runs, and an id this server
// never issued (an earlier run's) is a gap, even before its first event:
// a page resuming after a restart reloads instead of showing stale states.
func TestHubIDsOfAnotherRunAreAGap(t *testing.T) {
	old := newHub(4, 2, 1_000_000)
	old.publish(map[string]int{"n": 1})
	oldID := old.next - 1
	h := newHub(4, 2, 2_000_000)
	if _, _, gap := h.subscribe(oldID, false); !gap {
		t.Error("an earlier run's id before any event: no gap")
	}
	h.publish(map[string]int{"n": 2})
	if _, backlog, gap := h.subscribe(oldID, false); !gap || len(backlog) != 1 || backlog[0].id != 2_000_000 {
		t.Errorf("an earlier run's id: gap %v, %+v", gap, backlog)
	}
	if _, _, gap := h.subscribe(h.next+5, false); !gap {
		t.Error("an id from a later run: no gap")
	}
	if _, backlog, gap := h.subscribe(2_000_000, false); gap || len(backlog) != 0 {
		t.Errorf("resume after its own last id: gap %v, %d events", gap, len(backlog))
	}
}

// Issue 15, bug 5: the reference GUI reads dead and exitstatus: a
// requested stop (a shell loop ends 1 on SIGINT) reads as a clean stop,
// and a process on a lost machine does not look stopped.
func TestLegacyStatusForTheReferenceGUI(t *testing.T) {
	one := 1
	stopped := legacyOf(engine.Status{State: engine.StateStopped, ExitCode: &one, Window: &executor.Window{Dead: true}})
	if !stopped.Dead || stopped.ExitStatus == nil || *stopped.ExitStatus != 0 || *stopped.ExitCode != 1 {
		t.Errorf("a requested stop: %+v", stopped)
	}
	dead := legacyOf(engine.Status{State: engine.StateDead, ExitCode: &one, Window: &executor.Window{Dead: true}})
	if !dead.Dead || *dead.ExitStatus != 1 {
		t.Errorf("a crash: %+v", dead)
	}
	lost := legacyOf(engine.Status{State: engine.StateUnavailable, Error: "connection refused"})
	if !lost.Dead || lost.ExitStatus == nil || *lost.ExitStatus == 0 || lost.PID != "-" {
		t.Errorf("a lost machine's process: %+v", lost)
	}
	never := legacyOf(engine.Status{State: engine.StateStopped})
	if never.Dead || never.ExitStatus != nil {
		t.Errorf("never started: %+v", never)
	}
}
