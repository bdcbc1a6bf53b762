package engine

import (
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// escalation is the schedule of a stop: the first signal (SIGINT, or
// SIGQUIT with force_sigquit) at once, SIGTERM at half of the stop
// timeout, SIGKILL at the timeout, and giving up killAfter after SIGKILL (a
// process in uninterruptible sleep). A forced stop sends SIGKILL at once, as
// the reference GUI's forced stop does: force means now, not "a different
// first key and the same wait". It only decides; the caller signals.
type escalation struct {
	first     executor.Signal
	timeout   time.Duration
	killAfter time.Duration
	phase     int // 0: first sent, 1: SIGTERM sent, 2: SIGKILL sent
	killedAt  time.Duration
}

// giveUp is next's answer when even SIGKILL did not end the process.
const giveUp executor.Signal = ""

func newEscalation(force, sigquit bool, timeout time.Duration) *escalation {
	if timeout <= 0 {
		timeout = config.DefaultStopTimeout
	}
	s := &escalation{first: executor.SIGINT, timeout: timeout, killAfter: 5 * time.Second}
	switch {
	case force:
		s.first, s.phase = executor.SIGKILL, 2
	case sigquit:
		s.first = executor.SIGQUIT
	}
	return s
}

// next returns the signal to send now, elapsed after the first one, and
// whether there is one; giveUp (with true) means the stop failed.
func (s *escalation) next(elapsed time.Duration) (executor.Signal, bool) {
	switch {
	case s.phase == 0 && elapsed >= s.timeout/2:
		s.phase = 1
		return executor.SIGTERM, true
	case s.phase == 1 && elapsed >= s.timeout:
		s.phase, s.killedAt = 2, elapsed
		return executor.SIGKILL, true
	case s.phase == 2 && elapsed-s.killedAt > s.killAfter:
		return giveUp, true
	}
	return "", false
}
