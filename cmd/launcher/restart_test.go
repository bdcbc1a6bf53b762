package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// crashThenStay is a command that waits for the file GO, then exits 1 on
// its first three runs and stays up on the fourth (it counts its runs in
// COUNT).
func crashThenStay(dir string) string {
	return fmt.Sprintf(`'while [ ! -e %[1]s/go ]; do sleep 0.05; done; n=$(cat %[1]s/count 2>/dev/null || echo 0); echo $((n+1)) > %[1]s/count; echo "run $n"; [ "$n" -ge 3 ] && exec sleep 300; exit 1'`, dir)
}

// restartedRow polls status until proc has restarted want times and runs.
func restartedRow(e *tenv, proc string, want int) statusRow {
	e.t.Helper()
	var last statusRow
	if !executortest.Poll(func() bool {
		last = e.status()[proc]
		return last.Restarts == want && (last.State == "READY" || last.State == "RUNNING")
	}) {
		e.t.Fatalf("%s did not restart %d times and stay up: %+v", proc, want, last)
	}
	return last
}

// The restart loop runs beside the process: no launcher runs while it
// crashes three times, and status afterwards shows what happened.
func TestRestartPolicyWorksWithoutLauncher(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.writeConfig(fmt.Sprintf(`
context: {session: rs}
crashy:
  cmd: %s
  restart: on-failure
  restart_delay: 50ms
`, crashThenStay(e.dir)))
	// A launcher that follows the process is killed (the laptop went
	// away): from here on no launcher runs.
	follow := e.start("run", "crashy", "-w")
	e.waitState("crashy", "READY")
	_ = follow.cmd.Process.Kill()
	follow.wait(t)
	pid := e.pid("crashy")
	if err := os.WriteFile(filepath.Join(e.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := restartedRow(e, "crashy", 3)
	if st.LastRestartExit == nil || *st.LastRestartExit != 1 || st.PID == nil || *st.PID != pid {
		t.Errorf("after the restarts: %+v (pane pid was %d)", st, pid)
	}
	log := e.waitLog("rs", "crashy", "run 3")
	for i := 1; i <= 3; i++ {
		if !strings.Contains(log, fmt.Sprintf("restarting crashy (restart %d,", i)) {
			t.Errorf("restart %d not logged:\n%s", i, log)
		}
	}
	if strings.Contains(log, "restart 4") {
		t.Errorf("restarted once too often:\n%s", log)
	}
	// Lua reads the record too.
	lua := filepath.Join(e.dir, "restarts.lua")
	os.WriteFile(lua, []byte("local l = require('launcher')\nlocal st = l.status('crashy')\nprint(st.restarts, st.last_restart_exit_code, st.last_restart > 0)\n"), 0o644)
	if r := e.mustRun("script", lua); !strings.Contains(r.stdout, "3\t1\ttrue") {
		t.Errorf("Lua status: %q", r.stdout)
	}
	// The table shows the count too.
	if r := e.mustRun("status"); !strings.Contains(r.stdout, "RESTARTS") {
		t.Errorf("status table without RESTARTS:\n%s", r.stdout)
	}
	// A new start resets the record.
	e.mustRun("kill", "crashy")
	e.mustRun("run", "crashy")
	if st := e.status()["crashy"]; st.Restarts != 0 {
		t.Errorf("a new run carries the old count: %+v", st)
	}
}

// A process that always fails is restarted max_restarts times, then it is
// DEAD with the reason.
func TestRestartGivesUpAtMaxRestarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: rg, restart: always, restart_delay: 20ms, max_restarts: 2, restart_window: 90500ms}
boom: {cmd: 'echo boom; exit 2'}
`)
	e.mustRun("run", "boom")
	st := e.waitState("boom", "DEAD")
	// The window as written, milliseconds included.
	if st.Restarts != 2 || st.ExitCode == nil || *st.ExitCode != 2 || !strings.Contains(st.Error, "max_restarts 2 within 90.500s") {
		t.Errorf("gave up: %+v", st)
	}
	log := e.logOf("rg", "boom")
	if strings.Count(log, "boom\n") != 3 {
		t.Errorf("expected 3 runs:\n%s", log)
	}
	// A hook hears the give-up with its reason and count, not a bare
	// "exited" (issue 13, bug 8).
	e.mustRun("kill", "boom")
	hook := filepath.Join(e.dir, "giveup.lua")
	os.WriteFile(hook, []byte(`local launcher = require("launcher")
local got
launcher.on("exited", "boom", function(ev) if not ev.expected then got = ev end end)
assert(launcher.start("boom"))
local t0 = require("time").now()
while not (got and got.restarts) and require("time").since(t0) < 60 do launcher.sleep(0.05) end
print(got and got.message, got and got.restarts, got and got.exit_code)
`), 0o644)
	if r := e.mustRun("script", hook); !strings.Contains(r.stdout, "restart policy: gave up after 2 restarts (max_restarts 2") || !strings.Contains(r.stdout, "\t2\t2\n") {
		t.Errorf("the give-up as a hook hears it: %q", r.stdout)
	}
}

// A robot's wall clock steps when NTP or GPS sets it. The restart window
// counts on the monotonic clock: a wall clock set back (here an hour at
// each reading, through the pane's .bashrc) does not keep earlier
// restarts inside the window, so a process that fails now and then is
// not given up on. It was, after max_restarts, whatever their spacing.
func TestRestartWindowIgnoresWallClockSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: rw}
flaky: {cmd: 'sleep 1; exit 1', restart: always, restart_delay: 100ms, max_restarts: 2, restart_window: 500ms}
`)
	// bash's EPOCHREALTIME gone, the wall clock is date(1): this one goes
	// back an hour each time it is read.
	bin := filepath.Join(e.home, "clock")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	date := "#!/bin/sh\nn=$(cat \"$HOME/steps\" 2>/dev/null || echo 0); echo $((n + 1)) > \"$HOME/steps\"\necho $((2000000000 - n * 3600))\n"
	if err := os.WriteFile(filepath.Join(bin, "date"), []byte(date), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.home, ".bashrc"), []byte("unset EPOCHREALTIME\nPATH=$HOME/clock:$PATH\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("run", "flaky")
	var st statusRow
	if !executortest.Poll(func() bool {
		st = e.status()["flaky"]
		return st.Restarts >= 4 || st.State == "DEAD"
	}) {
		t.Fatalf("flaky did not restart 4 times: %+v", st)
	}
	if st.State == "DEAD" {
		t.Fatalf("given up on, with each run (1 s) longer than the window (500 ms): %+v", st)
	}
	// The clock was read (the test measured what it says).
	if b, err := os.ReadFile(filepath.Join(e.home, "steps")); err != nil || len(b) == 0 {
		t.Fatalf("the stepping clock was never read: %v", err)
	}
}

// A kill during the pause before a restart ends the process at once and
// nothing starts again; nor does a restart race a kill of a process that
// crashes as fast as it can.
func TestKillEndsTheRestartLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: rk}
slow: {cmd: 'echo crash; exit 3', restart: always, restart_delay: 1h, restart_delay_max: 1h}
fast: {cmd: 'echo crash; sleep 0.01; exit 3', restart: always, restart_delay: 1ms, max_restarts: 0}
`)
	e.mustRun("run", "slow")
	e.waitState("slow", "RESTARTING")
	// The delay is an hour: a kill that returns at all did not wait it out.
	e.mustRun("kill", "slow")
	if st := e.status()["slow"]; st.State != "STOPPED" || st.Restarts != 0 {
		t.Errorf("after kill: %+v", st)
	}
	if log := e.logOf("rk", "slow"); strings.Contains(log, "restarting slow") {
		t.Errorf("restarted after the kill:\n%s", log)
	}

	e.mustRun("run", "fast")
	e.waitLog("rk", "fast", "restarting fast (restart 3,")
	e.mustRun("kill", "fast")
	st := e.status()["fast"]
	if st.State != "STOPPED" {
		t.Fatalf("fast after kill: %+v", st)
	}
	// The pane is gone for good: no run of it is left anywhere.
	log := e.logOf("rk", "fast")
	end := strings.LastIndex(log, "exited with code")
	if end < 0 || strings.Contains(log[end:], "restarting fast") {
		t.Errorf("restart after the pane's end:\n%s", log)
	}
	if r := e.mustRun("status", "--json", "fast"); !strings.Contains(r.stdout, `"STOPPED"`) {
		t.Errorf("%s", r.stdout)
	}
}
