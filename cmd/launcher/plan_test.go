package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// sameRun asserts that proc still runs with the pid it had.
func (e *tenv) sameRun(proc string, pid int) {
	e.t.Helper()
	st := e.status()[proc]
	if st.PID == nil || *st.PID != pid || (st.State != "READY" && st.State != "RUNNING") {
		e.t.Errorf("%s changed: %s pid %s, want pid %d running", proc, st.State, fmtPtr(st.PID), pid)
	}
}

// Issue 12, finding 2: a restart whose start cannot write the log stops
// nothing. A log replaced by a symbolic link is bad input (exit 2); a full
// file system is the machine's fault (exit 1); either way the process
// keeps running, with the same pid.
func TestRestartWithAnUnwritableLogChangesNothing(t *testing.T) {
	t.Parallel()
	t.Run("symbolic link", func(t *testing.T) {
		e := newEnv(t, "context: {session: sl}\na: {cmd: sleep 300}\nb: {cmd: sleep 300, depends: [a]}\n")
		e.mustRun("run", "b")
		pa, pb := e.pid("a"), e.pid("b")
		log := filepath.Join(e.stateDir, "sl", "a.log")
		victim := filepath.Join(e.dir, "victim")
		if err := os.WriteFile(victim, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(log); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, log); err != nil {
			t.Fatal(err)
		}
		r := e.run("restart", "a")
		if r.code != 2 || !strings.Contains(r.stderr, "symbolic link") || !strings.Contains(r.stderr, "nothing was changed") {
			t.Errorf("restart with a symlinked log: %s", r)
		}
		e.sameRun("a", pa)
		e.sameRun("b", pb)
	})
	t.Run("full file system", func(t *testing.T) {
		if os.Getuid() != 0 {
			executortest.Skip(t, "mounting a small tmpfs needs root")
		}
		e := newEnv(t, "")
		logs := filepath.Join(e.dir, "logs")
		if err := os.MkdirAll(logs, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", logs).CombinedOutput(); err != nil {
			executortest.Skip(t, "cannot mount a tmpfs: "+strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { _ = exec.Command("umount", "-l", logs).Run() })
		e.writeConfig(fmt.Sprintf("context: {session: full, log_dir: %s}\na: {cmd: sleep 300}\n", logs))
		e.mustRun("run", "a")
		pa := e.pid("a")
		// Fill the file system to the last block.
		_ = exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(logs, "filler"), "bs=64k").Run()
		r := e.run("restart", "a")
		if r.code != 1 || !strings.Contains(r.stderr, "free on its file system") || !strings.Contains(r.stderr, "nothing was changed") {
			t.Errorf("restart on a full file system: %s", r)
		}
		e.sameRun("a", pa)
	})
}

// Issue 12, finding 1: a restart that needs a machine that is down stops
// nothing. planner (local) depends on perception and camera_driver (on
// armpc); with armpc's link refused, `restart camera_driver` exits 1 naming
// the machine, and planner runs on with the same pid; once the link is
// back, everything is as it was.
func TestRestartWithAMachineDownChangesNothing(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	proxy, armpc := w.proxied(w.hosts[0])
	w.writeConfig(fmt.Sprintf(`
context: {session: down}
camera_driver: {cmd: sleep 300, machine: %[1]s}
perception: {cmd: sleep 300, machine: %[1]s, depends: [camera_driver]}
planner: {cmd: sleep 300, depends: [perception, camera_driver], ready_check: "true"}
`, armpc))
	w.mustRun("run", "planner")
	pids := map[string]int{}
	for _, p := range []string{"camera_driver", "perception", "planner"} {
		pids[p] = w.pid(p)
	}
	// A machine that goes down refuses new connections and loses the ones
	// it had (the one a helper keeps for the commands that follow).
	proxy.Refuse(true)
	proxy.Drop()
	r := w.run("restart", "camera_driver")
	if r.code != 1 || !strings.Contains(r.stderr, "nothing was changed") || !strings.Contains(r.stderr, "127.0.0.1:") {
		t.Errorf("restart with armpc down: %s", r)
	}
	w.sameRun("planner", pids["planner"])
	if r := w.run("kill", "perception"); r.code != 1 || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("kill with armpc down: %s", r)
	}
	w.sameRun("planner", pids["planner"])
	// The same through the API (the dashboard's Restart button).
	srv := startServer(t, w.tenv, "")
	var answer map[string]any
	if code := srv.do("POST", "/api/v1/processes/camera_driver/restart?wait=done", map[string]any{}, &answer); code != 503 {
		t.Errorf("API restart with armpc down: %d %v", code, answer)
	}
	w.sameRun("planner", pids["planner"])
	proxy.Refuse(false)
	for p, pid := range pids {
		w.sameRun(p, pid)
	}
	// With the link refused again, kill --skip-unreachable stops what
	// needs no machine that is down (planner), and names the rest.
	proxy.Refuse(true)
	proxy.Drop()
	r = w.run("kill", "--all", "--skip-unreachable")
	if r.code != 1 || !strings.Contains(r.stderr, "not stopped") || !strings.Contains(r.stderr, "camera_driver, perception") {
		t.Errorf("kill --all --skip-unreachable: %s", r)
	}
	if st := w.state("planner"); st != "STOPPED" {
		t.Errorf("planner is %s after kill --skip-unreachable", st)
	}
	proxy.Refuse(false)
	w.sameRun("camera_driver", pids["camera_driver"])
	// The plan shows what the restart does.
	r = w.mustRun("plan", "--op", "restart", "camera_driver")
	if !strings.Contains(r.stdout, "stop:  camera_driver, perception, planner") || !strings.Contains(r.stdout, "start: camera_driver, perception\n") {
		t.Errorf("plan --op restart:\n%s", r.stdout)
	}
}
