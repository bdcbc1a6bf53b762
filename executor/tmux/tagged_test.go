package tmux

import (
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor"
)

// A concert_launcher run is found by its wrapper's or its script's command
// line, and everything below them belongs to it; the script's log is the
// run's output. Launcher's own tagged processes are read as before.
func TestParseTaggedConcertRuns(t *testing.T) {
	t.Parallel()
	rec := func(s ...string) string { return strings.Join(s, "\x00") + "\x00" }
	out := rec(
		"/proc/50/environ:LAUNCHER_TAG=abc", "/proc/50/environ:LAUNCHER_PROCESS=mine", "/proc/50/environ:LAUNCHER_SESSION=s",
		// The wrapper of ctrl (pid 10) and its script (11, a root of its own).
		"concert:10:/bin/bash\x1f/tmp/concert_launcher_wrapper.bash\x1fctrl\x1fwhile :; do sleep 1; done\x1f",
		"concert:11:script\x1f--append\x1f--flush\x1f--return\x1f--command\x1fbash -ic x\x1f/var/log/cl/ctrl.stdout\x1f",
		// An orphaned script of core (its wrapper is gone).
		"concert:30:script\x1f--append\x1f--flush\x1f--return\x1f--command\x1fbash -ic y\x1f/tmp/core.stdout\x1f",
		// Not concert's: a program that writes to some .stdout file.
		"concert:40:cp\x1fa\x1f/tmp/b.stdout\x1f",
		"ppid:10:1", "ppid:11:10", "ppid:12:11", "ppid:13:12", "ppid:30:1", "ppid:31:30", "ppid:99:1",
	)
	got := map[int]executor.TaggedProcess{}
	for _, tp := range ParseTagged([]byte(out)) {
		got[tp.PID] = tp
	}
	if tp := got[50]; tp.Tag != "abc" || tp.Process != "mine" || tp.Foreign != "" {
		t.Errorf("launcher's own: %+v", tp)
	}
	for _, pid := range []int{10, 11, 12, 13} {
		tp := got[pid]
		if tp.Tag != executor.ConcertTag("ctrl") || tp.Process != "ctrl" || tp.Foreign != executor.ConcertLauncher || tp.Output != "/var/log/cl/ctrl.stdout" {
			t.Errorf("pid %d: %+v", pid, tp)
		}
	}
	for _, pid := range []int{30, 31} {
		if tp := got[pid]; tp.Process != "core" || tp.Output != "/tmp/core.stdout" {
			t.Errorf("pid %d: %+v", pid, tp)
		}
	}
	for _, pid := range []int{40, 99} {
		if tp, ok := got[pid]; ok {
			t.Errorf("pid %d is not concert_launcher's: %+v", pid, tp)
		}
	}
}
