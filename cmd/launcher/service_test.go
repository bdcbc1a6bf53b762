package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// splitExecStart splits an ExecStart= or Environment= value as systemd
// does for what launcher writes: double-quoted words with backslash
// escapes, %% and $$ for % and $.
func splitExecStart(t *testing.T, v string) []string {
	t.Helper()
	var words []string
	for v = strings.TrimSpace(v); v != ""; v = strings.TrimSpace(v) {
		if v[0] != '"' {
			t.Fatalf("an unquoted word in %q", v)
		}
		var b strings.Builder
		i := 1
		for ; i < len(v) && v[i] != '"'; i++ {
			switch {
			case v[i] == '\\' && i+1 < len(v):
				i++
				if v[i] == 'n' {
					b.WriteByte('\n')
				} else {
					b.WriteByte(v[i])
				}
			case (v[i] == '%' || v[i] == '$') && i+1 < len(v) && v[i+1] == v[i]:
				b.WriteByte(v[i])
				i++
			default:
				b.WriteByte(v[i])
			}
		}
		words = append(words, b.String())
		v = v[i+1:]
	}
	return words
}

// Issue 16, up at boot: `service install --user` writes a unit that
// systemd accepts (systemd-analyze verify), that starts serve after the
// network is online and brings the named processes up; its ExecStart line,
// run as systemd would, does that; stopping it (KillMode=process) leaves
// the robot running. Bad input changes nothing; a unit launcher did not
// write is never replaced or removed.
func TestServiceInstallRunsServeAndBringsUp(t *testing.T) {
	t.Parallel()
	executortest.RequireTool(t, "systemd-analyze")
	e := newEnv(t, `
context: {session: boot}
core: {cmd: sleep 300}
app: {cmd: sleep 300, depends: [core]}
other: {cmd: sleep 300}
`)
	xdg := filepath.Join(e.dir, "xdg")
	e.extra = append(e.extra, "XDG_CONFIG_HOME="+xdg)
	unit := filepath.Join(xdg, "systemd", "user", "launcher-boot.service")
	port := executortest.FreePort(t, "127.0.0.1")

	if r := e.run("service", "install", "--user", "--up", "nosuch"); r.code != 2 {
		t.Errorf("install --up of an unknown process: %s", r)
	}
	if _, err := os.Stat(unit); err == nil {
		t.Fatalf("a refused install wrote the unit")
	}
	r := e.mustRun("service", "install", "--user", "--no-enable", "--up", "app", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if !strings.Contains(r.stdout, "wrote "+unit) || !strings.Contains(r.stdout, "systemctl --user enable --now launcher-boot") {
		t.Errorf("install: %s", r)
	}
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"After=network-online.target", "Wants=network-online.target", "KillMode=process",
		"Restart=on-failure", "WantedBy=default.target", "Environment=\"LAUNCHER_STATE_DIR=" + e.stateDir + "\""} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("the unit lacks %q:\n%s", want, text)
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s\n%s", err, out, text)
	}

	// Run the unit's ExecStart with its environment, as systemd would.
	var argv, env []string
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			argv = splitExecStart(t, v)
		}
		if v, ok := strings.CutPrefix(l, "Environment="); ok {
			env = append(env, splitExecStart(t, v)...)
		}
	}
	if len(argv) < 2 || argv[0] != launcherBin || argv[1] != "serve" {
		t.Fatalf("ExecStart: %q", argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(env, "HOME="+e.home, "PATH="+os.Getenv("PATH"))
	cmd.Dir = "/"
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	executortest.Eventually(t, "the service brought app up", func() bool { return e.state("app") == "READY" })
	if e.state("core") != "READY" || e.state("other") != "STOPPED" {
		t.Errorf("core %s, other %s", e.state("core"), e.state("other"))
	}
	executortest.Eventually(t, "serve says app is up", func() bool { return strings.Contains(out.String(), "launcher serve: app up") })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if e.state("app") != "READY" {
		t.Errorf("stopping the service stopped app")
	}

	// Reinstalling updates launcher's own unit; status shows it.
	if r := e.mustRun("service", "install", "--user", "--no-enable"); !strings.Contains(r.stdout, "updated "+unit) {
		t.Errorf("reinstall: %s", r)
	}
	if r := e.mustRun("service", "status", "--user"); !strings.Contains(r.stdout, unit) || !strings.Contains(r.stdout, "ExecStart=") {
		t.Errorf("status: %s", r)
	}
	e.mustRun("service", "uninstall", "--user")
	if _, err := os.Stat(unit); err == nil {
		t.Errorf("uninstall left the unit")
	}
	if r := e.run("service", "status", "--user"); r.code != 3 || !strings.Contains(r.stdout, "not installed") {
		t.Errorf("status after uninstall: %s", r)
	}
	// A unit of the same name that launcher did not write is left alone.
	if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("service", "install", "--user", "--no-enable"); r.code != 1 || !strings.Contains(r.stderr, "launcher did not write it") {
		t.Errorf("install over a foreign unit: %s", r)
	}
	if r := e.run("service", "uninstall", "--user"); r.code != 1 {
		t.Errorf("uninstall of a foreign unit: %s", r)
	}
	if data, _ := os.ReadFile(unit); string(data) != "[Service]\nExecStart=/bin/true\n" {
		t.Errorf("the foreign unit changed: %q", data)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a poll.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve --up at boot, before the network is up: the SSH machine refuses
// connections, serve says so and tries again, and brings the process up
// once the machine answers; until then nothing else starts.
func TestServeUpWaitsForTheNetwork(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t, []string{"127.0.0.1"}, executortest.SSHDOptions{})
	p, machine := w.proxied(w.hosts[0])
	p.Refuse(true)
	w.writeConfig(fmt.Sprintf(`
context: {session: bootnet}
base: {cmd: sleep 300}
remote: {cmd: sleep 300, machine: %s, depends: [base]}
`, machine))
	port := executortest.FreePort(t, "127.0.0.1")
	b := w.start("serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--up", "remote")
	executortest.Eventually(t, "serve says it will try again", func() bool {
		return strings.Contains(b.stdout(), "trying again in 5s (attempt 1)")
	})
	// Plan, check, act: the unreachable machine held back base too.
	if got := w.state("base"); got != "STOPPED" {
		t.Errorf("base is %s while remote's machine is unreachable", got)
	}
	p.Refuse(false)
	executortest.Eventually(t, "remote up once its machine answers", func() bool {
		return strings.Contains(b.stdout(), "launcher serve: remote up")
	})
	if got := w.state("remote"); got != "READY" && got != "RUNNING" {
		t.Errorf("remote is %s after serve brought it up:\n%s", got, b.stdout())
	}
}
