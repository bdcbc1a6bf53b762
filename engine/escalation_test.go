package engine

import (
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

func TestEscalationSchedule(t *testing.T) {
	s := newEscalation(false, 4*time.Second)
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
	if f := newEscalation(true, 0); f.first != executor.SIGQUIT || f.timeout != 10*time.Second {
		t.Errorf("force: %+v", f)
	}
}
