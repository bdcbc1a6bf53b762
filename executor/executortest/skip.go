// Package executortest holds what the tests of every executor and of the
// CLI share: starting real components (tmux servers, sshd, dockerd) on
// loopback, the skip policy, and polling with a deadline.
package executortest

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// DisallowSkipEnv turns every "component unavailable" skip into a failure;
// CI sets it, so a test that silently stopped running is noticed.
const DisallowSkipEnv = "LAUNCHER_TEST_DISALLOW_SKIP"

// Skip skips t with reason, or fails it when DisallowSkipEnv is set.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(DisallowSkipEnv) != "" {
		t.Fatalf("component unavailable and %s is set: %s", DisallowSkipEnv, reason)
	}
	t.Skip(reason)
}

// RequireTool skips (see Skip) unless the named programs are in PATH.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Skip(t, n+" is not installed (make test installs it)")
		}
	}
}

// Patience bounds every wait of a test. It is long on purpose: a wait
// polls for its condition and ends as soon as it holds, so the bound only
// stops a hang; a loaded CI machine must never reach it. Set
// LAUNCHER_TEST_PATIENCE (a Go duration) to fail hangs sooner while
// developing.
var Patience = patience()

func patience() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LAUNCHER_TEST_PATIENCE")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Minute
}

// Eventually polls cond every few milliseconds until it returns true, or
// fails with msg once Patience ran out. It is how tests wait: never a
// fixed sleep.
func Eventually(t testing.TB, msg string, cond func() bool) {
	t.Helper()
	if !Poll(cond) {
		t.Fatalf("not true after %s: %s", Patience, msg)
	}
}

// Poll polls cond until it returns true (then Poll returns true) or
// Patience ran out (false).
func Poll(cond func() bool) bool {
	deadline := time.Now().Add(Patience)
	wait := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}
