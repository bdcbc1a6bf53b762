package tmux

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/local"
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

// TestTaggedLocalMatchesTheScript: on this computer the scan for launcher's
// and concert_launcher's processes is read from /proc in Go; it finds the
// same processes, with the same fields, as taggedScript does over a shell
// (which every remote machine still runs).
func TestTaggedLocalMatchesTheScript(t *testing.T) {
	executortest.RequireTool(t, "bash", "grep")
	dir := t.TempDir()
	sock := filepath.Join(dir, "tmux.sock")
	wrapper := filepath.Join(dir, "concert_launcher_wrapper.bash")
	if err := os.WriteFile(wrapper, []byte("sleep 300; :\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	start := func(env []string, args ...string) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	start([]string{"LAUNCHER_TAG=eqv1", "LAUNCHER_PROCESS=node", "LAUNCHER_SESSION=s", "LAUNCHER_LOG=/l/node.log", "LAUNCHER_OTHER=x"}, "sleep", "300")
	start([]string{"X=LAUNCHER_TAG=eqv2"}, "sleep", "300") // only a value mentions it
	start([]string{"TMUX=" + sock + ",1,0"}, "bash", wrapper, "probe", "sleep 300")
	start([]string{"TMUX=" + sock + "-other,1,0"}, "bash", wrapper, "other", "sleep 300")
	ours := func(ps []executor.TaggedProcess) []string {
		var out []string
		for _, p := range ps {
			if strings.HasPrefix(p.Tag, "eqv") || p.Foreign != "" && (p.Process == "probe" || p.Process == "other") {
				out = append(out, fmt.Sprintf("%+v", p))
			}
		}
		sort.Strings(out)
		return out
	}
	var got, want []string
	// The wrapper's child may not be there yet at the first look.
	if !executortest.Poll(func() bool {
		res, err := local.Host{}.Run(context.Background(), executor.Command{Args: []string{"sh", "-c", taggedScript, "sh", sock}})
		if err != nil || res.ExitCode != 0 {
			return false
		}
		want = ours(ParseTagged(res.Stdout))
		got = ours(ParseTagged(taggedLocal(sock)))
		return len(want) == 3 && strings.Join(got, "\n") == strings.Join(want, "\n")
	}) {
		t.Fatalf("from /proc in Go:\n%s\nfrom the script:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(got[0]+got[1]+got[2], "Tag:eqv1 Process:node Session:s Log:/l/node.log") {
		t.Errorf("launcher's tagged process: %v", got)
	}
	for _, g := range got {
		if strings.Contains(g, "Process:other") {
			t.Errorf("a concert run of another tmux server: %s", g)
		}
	}
}

// concertArg is the script's grep -E pattern, argument by argument.
func TestConcertArgIsThePattern(t *testing.T) {
	re := regexp.MustCompile(concertPattern)
	args := []string{"", "/", "bash", "concert_launcher_wrapper.bash", "/opt/concert_launcher_wrapper.bash",
		"xconcert_launcher_wrapper.bash", "/a/xconcert_launcher_wrapper.bash", "concert_launcher_wrapper.bash/",
		"concert_launcher_wrapper.bashx", "a.stdout", "/a.stdout", "/.stdout", "/x/.stdout", "/x/y.stdout", "//.stdout",
		"/tmp/p.stdout.1", "/tmp/p.stdoutx", "p/.stdout", "/tmp/ü.stdout", ".stdout", "/stdout"}
	for _, a := range args {
		for _, line := range [][]string{{a}, {"bash", a}, {a, "x"}} {
			cmdline := []byte(strings.Join(line, "\x00") + "\x00")
			want := false
			for _, x := range line {
				want = want || re.MatchString(x)
			}
			if got := concertArg(cmdline); got != want {
				t.Errorf("concertArg(%q) = %v, the pattern says %v", line, got, want)
			}
		}
	}
}
