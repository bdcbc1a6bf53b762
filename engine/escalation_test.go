package engine

import (
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

func TestEscalationSchedule(t *testing.T) {
	s := newEscalation(false, false, 4*time.Second)
	if s.first != executor.SIGINT {
		t.Fatalf("first signal %s", s.first)
	}
	steps := []struct {
		at   time.Duration
		want executor.Signal
		ok   bool
	}{
		{0, "", false},
		{1999 * time.Millisecond, "", false},
		{2 * time.Second, executor.SIGTERM, true},
		{3 * time.Second, "", false}, // SIGTERM is sent once
		{4 * time.Second, executor.SIGKILL, true},
		{8 * time.Second, "", false},
		{9*time.Second + time.Millisecond, giveUp, true},
	}
	for _, st := range steps {
		got, ok := s.next(st.at)
		if got != st.want || ok != st.ok {
			t.Errorf("at %s: %q %v, want %q %v", st.at, got, ok, st.want, st.ok)
		}
	}
	if q := newEscalation(false, true, 0); q.first != executor.SIGQUIT || q.timeout != 10*time.Second {
		t.Errorf("force_sigquit: %+v", q)
	}
	// A forced stop kills at once and never sends a gentler signal after
	// it; it gives up only if even SIGKILL does not end the process.
	f := newEscalation(true, true, time.Minute)
	if f.first != executor.SIGKILL {
		t.Fatalf("force: first signal %s, want KILL", f.first)
	}
	for _, at := range []time.Duration{0, 30 * time.Second, time.Minute} {
		if got, ok := f.next(at / 12); ok {
			t.Errorf("force at %s: %q", at/12, got)
		}
	}
	if got, ok := f.next(5*time.Second + time.Millisecond); !ok || got != giveUp {
		t.Errorf("force after killAfter: %q %v, want give-up", got, ok)
	}
}
