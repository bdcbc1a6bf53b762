package engine

import (
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// escalation is the schedule of a stop: the first signal (SIGINT, or
// SIGQUIT with force / force_sigquit) at once, SIGTERM at half of the stop
// timeout, SIGKILL at the timeout, and giving up killAfter after SIGKILL (a
// process in uninterruptible sleep). It only decides; the caller signals.
type escalation struct {
	first     executor.Signal
	timeout   time.Duration
	killAfter time.Duration
	phase     int // 0: first sent, 1: SIGTERM sent, 2: SIGKILL sent
	killedAt  time.Duration
}

// giveUp is next's answer when even SIGKILL did not end the process.
const giveUp executor.Signal = ""

func newEscalation(force bool, timeout time.Duration) *escalation {
	first := executor.SIGINT
	if force {
		first = executor.SIGQUIT
	}
	if timeout <= 0 {
		timeout = config.DefaultStopTimeout
	}
	return &escalation{first: first, timeout: timeout, killAfter: 5 * time.Second}
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
