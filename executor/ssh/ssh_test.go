package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/tmux"
)

// world is a client side (home with keys and known_hosts) and some hosts.
type world struct {
	home  string
	key   string
	known string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	executortest.RequireTool(t, "ssh-keygen", "tmux")
	dir, err := os.MkdirTemp("", "ltssh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &world{home: dir, known: filepath.Join(dir, ".ssh", "known_hosts")}
	if err := os.MkdirAll(filepath.Join(dir, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	w.key = executortest.ClientKey(t, dir)
	return w
}

func (w *world) trust(t *testing.T, hosts ...*executortest.SSHD) {
	t.Helper()
	f, err := os.OpenFile(w.known, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, h := range hosts {
		fmt.Fprintln(f, h.KnownHostsLine())
	}
}

func (w *world) transport(t *testing.T, mod func(*Options)) *Transport {
	t.Helper()
	o := Options{Home: w.home, Keys: []string{w.key}, KnownHosts: []string{w.known}, ConnectTimeout: 3 * time.Second}
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), executortest.Patience)
	t.Cleanup(cancel)
	return c
}

// sshMachine is a tmux machine on a fresh sshd at addr.
func sshMachine(t *testing.T, w *world, addr string, o executortest.SSHDOptions) *tmux.Machine {
	m, _ := sshMachineAt(t, w, addr, o)
	return m
}

// sshMachineAt is sshMachine with its sshd (whose state directory is on
// this machine).
func sshMachineAt(t *testing.T, w *world, addr string, o executortest.SSHDOptions) (*tmux.Machine, *executortest.SSHD) {
	h := executortest.StartSSHD(t, addr, w.key, o)
	w.trust(t, h)
	host, err := w.transport(t, nil).Host(h.Machine())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	m, err := tmux.New(ctx(t), host, tmux.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, h.SSHLog())
	}
	return m, h
}

// TestConformanceSSH runs the machine contract over SSH; it needs no
// dockerd, so a machine without Docker still checks the SSH transport.
func TestConformanceSSH(t *testing.T) {
	w := newWorld(t)
	executortest.Suite(t, executortest.Target{Machine: sshMachine(t, w, "127.0.0.2", executortest.SSHDOptions{}), Session: "conf"})
}

// TestConformanceSSHDocker runs it again with a container reached through
// the SSH host.
func TestConformanceSSHDocker(t *testing.T) {
	w := newWorld(t)
	d := executortest.StartDockerd(t)
	m := sshMachine(t, w, "127.0.0.3", executortest.SSHDOptions{Env: map[string]string{"DOCKER_HOST": d.Host()}})
	d.Run(t, "conf-ssh")
	executortest.Suite(t, executortest.Target{Machine: m, Container: "conf-ssh", Session: "conf"})
}

func TestOneConnectionForManyCommands(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	w.trust(t, h)
	tr := w.transport(t, nil)
	host, _ := tr.Host(h.Machine())
	defer host.Close()
	var wg sync.WaitGroup
	errs := make([]error, 30)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := host.Run(ctx(t), executor.Command{Args: []string{"echo", fmt.Sprint(i)}})
			if err == nil && strings.TrimSpace(string(res.Stdout)) != fmt.Sprint(i) {
				err = fmt.Errorf("got %q", res.Stdout)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.Dials(); n != 1 {
		t.Errorf("30 concurrent commands opened %d connections, want 1", n)
	}
}

func TestCommandReachesProgramByteForByte(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	w.trust(t, h)
	host, _ := w.transport(t, nil).Host(h.Machine())
	defer host.Close()
	args := append([]string{"printf", "%s\\0"}, executortest.Hostile...)
	res, err := host.Run(ctx(t), executor.Command{Args: args, Env: executortest.HostileEnv, Dir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(res.Stdout), "\x00"), "\x00")
	if strings.Join(got, "\n---\n") != strings.Join(executortest.Hostile, "\n---\n") {
		t.Errorf("arguments changed on the way:\n%q", got)
	}
	res, err = host.Run(ctx(t), executor.Command{Args: []string{"sh", "-c", `printf '%s' "$X"; pwd`}, Env: executortest.HostileEnv, Dir: "/tmp"})
	if err != nil || string(res.Stdout) != executortest.HostileEnv[0].Value+"/tmp\n" {
		t.Errorf("env/dir: %q %v", res.Stdout, err)
	}
}

func TestHostKeys(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	run := func(tr *Transport) error {
		host, _ := tr.Host(h.Machine())
		defer host.Close()
		_, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}})
		return err
	}
	// Unknown: refused, with how to fix it.
	err := run(w.transport(t, nil))
	var hk *HostKeyError
	if !errors.As(err, &hk) || hk.Changed || !strings.Contains(err.Error(), "ssh-keyscan -p") || !strings.Contains(err.Error(), "--accept-new-host-keys") {
		t.Fatalf("unknown host key: %v", err)
	}
	if data, _ := os.ReadFile(w.known); len(data) != 0 {
		t.Fatalf("known_hosts written without opt-in: %s", data)
	}
	// accept-new records it, and the next connection verifies against it.
	if err := run(w.transport(t, func(o *Options) { o.AcceptNew = true })); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(w.known)
	if !strings.Contains(string(data), strings.Fields(h.HostKeyPub)[1]) {
		t.Fatalf("key not recorded: %s", data)
	}
	if err := run(w.transport(t, nil)); err != nil {
		t.Fatalf("recorded key: %v", err)
	}
	// Changed: refused even with accept-new.
	other := executortest.StartSSHD(t, "127.0.0.3", w.key, executortest.SSHDOptions{})
	line := fmt.Sprintf("[127.0.0.2]:%d %s\n", h.Port, other.HostKeyPub)
	if err := os.WriteFile(w.known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(w.transport(t, func(o *Options) { o.AcceptNew = true }))
	if !errors.As(err, &hk) || !hk.Changed || !strings.Contains(err.Error(), "ssh-keygen -R") {
		t.Fatalf("changed host key: %v", err)
	}
}

func TestSSHConfigAliasAndProxyJump(t *testing.T) {
	w := newWorld(t)
	jump := executortest.StartSSHD(t, "127.0.0.3", w.key, executortest.SSHDOptions{})
	target := executortest.StartSSHD(t, "127.0.0.4", w.key, executortest.SSHDOptions{})
	w.trust(t, jump, target)
	// The key is found through IdentityFile only.
	cfg := fmt.Sprintf(`Host robot-jump
  HostName 127.0.0.3
  Port %d
  User %s
  IdentityFile %s

Host robot
  HostName 127.0.0.4
  Port %d
  User %s
  IdentityFile ~/client_key
  ProxyJump robot-jump
`, jump.Port, executortest.TestUser, w.key, target.Port, executortest.TestUser)
	if err := os.WriteFile(filepath.Join(w.home, ".ssh", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := w.transport(t, func(o *Options) { o.Keys = nil })
	host, err := tr.Host("robot")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	res, err := host.Run(ctx(t), executor.Command{Args: []string{"sh", "-c", `id -un; echo "$SSH_CONNECTION"`}})
	if err != nil {
		t.Fatalf("%v\n%s", err, target.SSHLog())
	}
	out := string(res.Stdout)
	if !strings.HasPrefix(out, executortest.TestUser+"\n") || !strings.Contains(out, fmt.Sprintf("127.0.0.4 %d", target.Port)) {
		t.Errorf("through the alias: %q", out)
	}
	// Only the jump host was dialled; the target was reached through it.
	if n := tr.Dials(); n != 1 {
		t.Errorf("%d TCP connections dialled, want 1 (to the jump host)", n)
	}
}

func TestLinkLossIsDetectedAndRecovered(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.2", w.key, executortest.SSHDOptions{})
	proxy := executortest.NewProxy(t, "127.0.0.1:0", net.JoinHostPort(h.Addr, fmt.Sprint(h.Port)))
	// known_hosts names the proxy's address: that is where we connect.
	if err := os.WriteFile(w.known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", proxy.Addr().Port, h.HostKeyPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	lost := make(chan time.Time, 4)
	tr := w.transport(t, func(o *Options) {
		o.OnLink = func(machine string, up bool, err error) {
			if !up {
				lost <- time.Now()
			}
		}
	})
	host, _ := tr.Host(fmt.Sprintf("%s@127.0.0.1:%d", executortest.TestUser, proxy.Addr().Port))
	defer host.Close()
	if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	// A stalled link never errors by itself: noticing it at all is the
	// keepalive's work (how soon: make bench, "dropped SSH link noticed").
	proxy.Stall()
	select {
	case <-lost:
	case <-time.After(executortest.Patience):
		t.Fatal("link loss not noticed")
	}
	// While the link is down, commands fail with UnavailableError (they
	// do not wait on the stalled connection).
	_, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}})
	if !executor.IsUnavailable(err) {
		t.Errorf("during the cut: %v", err)
	}
	proxy.Resume()
	proxy.Drop()
	if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
		t.Fatalf("after the link came back: %v", err)
	}
}

func TestUnreachableMachineFailsWithinTimeout(t *testing.T) {
	w := newWorld(t)
	port := executortest.FreePort(t, "127.0.0.5")
	tr := w.transport(t, func(o *Options) { o.ConnectTimeout = time.Second })
	host, _ := tr.Host(fmt.Sprintf("nobody@127.0.0.5:%d", port))
	_, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}})
	if !executor.IsUnavailable(err) {
		t.Errorf("%v", err)
	}
}

func TestSplitMachine(t *testing.T) {
	cases := []struct {
		in, user, host string
		port           int
		bad            bool
	}{
		{"robot@10.0.0.2", "robot", "10.0.0.2", 0, false},
		{"robot@10.0.0.2:2222", "robot", "10.0.0.2", 2222, false},
		{"host", "", "host", 0, false},
		{"u@[::1]:22", "u", "::1", 22, false},
		{"u@::1", "u", "::1", 0, false},
		{"a@b@host", "a@b", "host", 0, false},
		{"@host", "", "", 0, true},
		{"u@h:x", "", "", 0, true},
	}
	for _, c := range cases {
		u, h, p, err := splitMachine(c.in)
		if (err != nil) != c.bad || (!c.bad && (u != c.user || h != c.host || p != c.port)) {
			t.Errorf("splitMachine(%q) = %q %q %d %v", c.in, u, h, p, err)
		}
	}
}
