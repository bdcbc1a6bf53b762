package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/engine/config"
)

// busyChecker is a custom check whose every try runs until its context
// ends, as a Lua check that loops without waiting does.
type busyChecker struct{}

func (busyChecker) HasCustom(string) bool { return true }

func (busyChecker) Check(ctx context.Context, p Probe) (bool, string, error) {
	<-ctx.Done()
	return false, "the spin check (x.lua:3) did not return", nil
}

// A ready_timeout shorter than the first try (a loaded machine, CI run 33):
// the failure still says why, with the last try's reason. It was dropped
// when the timeout came within the first second.
func TestReadyTimeoutGivesTheLastReason(t *testing.T) {
	e, _, _ := newTestEngine(t, `
context: {session: s}
a: {cmd: a, ready_check: {check: spin}, ready_timeout: 300ms}
`)
	e.SetChecker(busyChecker{})
	err := e.Start(ctxT(t), []string{"a"}, config.Request{})
	if err == nil || !strings.Contains(err.Error(), "not ready after") || !strings.Contains(err.Error(), "the spin check (x.lua:3) did not return") {
		t.Errorf("start: %v", err)
	}
}
