package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// waitHelper waits until n helpers answer on sockets of the state
// directory (the first command over SSH starts one, in its own time).
func (e *tenv) waitHelper(n int) {
	e.t.Helper()
	deadline := time.Now().Add(executortest.Patience)
	for {
		socks, _ := filepath.Glob(filepath.Join(e.stateDir, "ssh", "*.sock"))
		up := 0
		for _, s := range socks {
			if c, err := net.Dial("unix", s); err == nil {
				c.Close()
				up++
			}
		}
		if up >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("no helper keeps the connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommandsShareAKeptConnection: after the first command over SSH, the
// following ones reach the machine through the helper that keeps its
// connection (no TCP connection, key exchange or authentication of their
// own); LAUNCHER_SSH_PERSIST=0 keeps none, and a bad value is a usage error
// that changes nothing.
func TestCommandsShareAKeptConnection(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	p, m := w.proxied(w.hosts[0])
	w.writeConfig(fmt.Sprintf("context: {session: kept}\nnode: {cmd: 'echo up; exec sleep 300', machine: '%s'}\n", m))
	w.mustRun("run", "node")
	w.waitHelper(1)
	before := p.Accepted()
	if r := w.mustRun("status"); !strings.Contains(r.stdout, "node") || !strings.Contains(r.stdout, "READY") {
		t.Fatalf("status through the helper:\n%s", r)
	}
	w.extra = append(w.extra, "LAUNCHER_TRACE=1")
	if r := w.mustRun("kill", "node"); !strings.Contains(r.stderr, "through the kept connection") {
		t.Errorf("the trace does not say the kill came through the kept connection:\n%s", r)
	}
	w.extra = w.extra[:len(w.extra)-1]
	w.mustRun("run", "node")
	if w.state("node") != "READY" {
		t.Fatal("node is not running after a restart through the helper")
	}
	if n := p.Accepted() - before; n != 0 {
		t.Errorf("commands after the first opened %d connections to the machine, want 0", n)
	}

	w.extra = append(w.extra, "LAUNCHER_SSH_PERSIST=0")
	before = p.Accepted()
	w.mustRun("status")
	if n := p.Accepted() - before; n != 1 {
		t.Errorf("with LAUNCHER_SSH_PERSIST=0 status opened %d connections, want 1", n)
	}

	w.extra[len(w.extra)-1] = "LAUNCHER_SSH_PERSIST=ten minutes"
	r := w.run("kill", "node")
	if r.code != 2 || !strings.Contains(r.stderr, "LAUNCHER_SSH_PERSIST") || !strings.Contains(r.stderr, "10m") {
		t.Fatalf("a bad LAUNCHER_SSH_PERSIST:\n%s", r)
	}
	w.extra = w.extra[:len(w.extra)-1]
	if w.state("node") != "READY" {
		t.Fatal("a usage error stopped node")
	}
}
