package ssh

import (
	"context"
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

// kept is a helper keeping one machine's connection, run in this process
// (the CLI runs the same KeepConnection in `launcher ssh-persist`).
type kept struct {
	dir     string
	machine string
	cancel  context.CancelFunc
	done    chan error
}

// persistDir is a short 0700 directory for helper sockets.
func persistDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ltp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func keepOpts(dir string, persist time.Duration) func(*Options) {
	return func(o *Options) { o.Persist, o.PersistDir = persist, dir }
}

// startKeeping runs KeepConnection for machine and waits until its socket
// answers.
func startKeeping(t *testing.T, w *world, dir, machine string, persist time.Duration) *kept {
	t.Helper()
	tr := w.transport(t, keepOpts(dir, persist))
	c, cancel := context.WithCancel(context.Background())
	k := &kept{dir: dir, machine: machine, cancel: cancel, done: make(chan error, 1)}
	go func() { k.done <- tr.KeepConnection(c, machine) }()
	t.Cleanup(func() {
		cancel()
		<-k.done
	})
	deadline := time.Now().Add(executortest.Patience)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.sock")); len(m) == 1 {
			if c, err := net.Dial("unix", m[0]); err == nil {
				c.Close()
				return k
			}
		}
		select {
		case err := <-k.done:
			t.Fatalf("the helper ended before it listened: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper never listened")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ended waits for the helper to return (false: still running at the
// deadline).
func (k *kept) ended(d time.Duration) (error, bool) {
	select {
	case err := <-k.done:
		k.done <- err // for the cleanup
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// proxied puts a TCP proxy in front of h: the world returned trusts h's key
// at the proxy's address, where machine leads.
func proxied(t *testing.T, w *world, h *executortest.SSHD) (*world, string, *executortest.Proxy) {
	t.Helper()
	proxy := executortest.NewProxy(t, "127.0.0.1:0", net.JoinHostPort(h.Addr, fmt.Sprint(h.Port)))
	w2 := *w
	w2.known = filepath.Join(persistDir(t), "known_hosts")
	if err := os.WriteFile(w2.known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", proxy.Addr().Port, h.HostKeyPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &w2, fmt.Sprintf("%s@127.0.0.1:%d", executortest.TestUser, proxy.Addr().Port), proxy
}

// client is a transport like a later command's: it finds the helper, and
// fails the test if it dials the machine itself.
func client(t *testing.T, w *world, dir string) *Transport {
	return w.transport(t, func(o *Options) {
		keepOpts(dir, time.Minute)(o)
		o.StartPersist = func(m string) { t.Errorf("a helper was asked for %s while one keeps it", m) }
	})
}

// throughAHelper is a machine on a fresh sshd whose connection a helper
// keeps, and a client transport and host that reach it through the helper.
func throughAHelper(t *testing.T) (*executortest.SSHD, string, *Transport, *Host) {
	t.Helper()
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.4", w.key, executortest.SSHDOptions{})
	w.trust(t, h)
	dir := persistDir(t)
	startKeeping(t, w, dir, h.Machine(), time.Minute)
	tr := client(t, w, dir)
	host, err := tr.Host(h.Machine())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	return h, dir, tr, host
}

// TestConformanceThroughAKeptConnection runs the whole machine contract
// (spawns, env files, signals, streams, logs, terminals' commands) through a
// helper, as every command after the first does.
func TestConformanceThroughAKeptConnection(t *testing.T) {
	h, dir, tr, host := throughAHelper(t)
	m, err := tmux.New(ctx(t), host, tmux.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, h.SSHLog())
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	if fi, err := os.Stat(socks[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the helper's socket: %v %v, want mode 0600", fi.Mode(), err)
	}
	executortest.Suite(t, executortest.Target{Machine: m, Session: "kept"})
	if tr.Dials() != 0 || tr.ViaHelper() != 1 {
		t.Errorf("the client dialled %d times and came through the helper %d times; want 0 and 1", tr.Dials(), tr.ViaHelper())
	}
}

// TestKeptConnectionCarriesManySessions: commands of several clients at once
// need more sessions than sshd allows on one connection (MaxSessions 10);
// the helper opens further connections instead of refusing them.
func TestKeptConnectionCarriesManySessions(t *testing.T) {
	w0 := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.4", w0.key, executortest.SSHDOptions{})
	w, machine, proxy := proxied(t, w0, h)
	dir := persistDir(t)
	startKeeping(t, w, dir, machine, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for c := 0; c < 4; c++ {
		tr := client(t, w, dir)
		host, _ := tr.Host(machine)
		t.Cleanup(func() { host.Close() })
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("%d-%d", c, i)
				res, err := host.Run(ctx(t), executor.Command{Args: []string{"sh", "-c", "sleep 0.5; echo " + want}})
				if err == nil && strings.TrimSpace(string(res.Stdout)) != want {
					err = fmt.Errorf("got %q, want %q", res.Stdout, want)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := proxy.Accepted(); n < 2 {
		t.Errorf("the helper opened %d connection(s) for more sessions than one allows", n)
	}
}

// TestKeptConnectionEnds: a helper ends when no command has used it for its
// time, when its socket is removed (the state directory deleted), and when
// the machine's link drops; a second helper for the same machine leaves at
// once. A stale socket (a helper killed with SIGKILL) is dialled around.
func TestKeptConnectionEnds(t *testing.T) {
	w := newWorld(t)
	h := executortest.StartSSHD(t, "127.0.0.4", w.key, executortest.SSHDOptions{})
	w.trust(t, h)

	t.Run("idle", func(t *testing.T) {
		dir := persistDir(t)
		k := startKeeping(t, w, dir, h.Machine(), 2*time.Second)
		// A client keeps it: well past its idle time it still runs.
		host, _ := client(t, w, dir).Host(h.Machine())
		if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		if err, done := k.ended(5 * time.Second); done {
			t.Fatalf("the helper ended under a client: %v", err)
		}
		host.Close()
		if err, done := k.ended(executortest.Patience); !done || err != nil {
			t.Fatalf("idle helper: ended %v, %v", done, err)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.sock")); len(m) != 0 {
			t.Errorf("its socket is left: %v", m)
		}
	})

	t.Run("socket removed", func(t *testing.T) {
		dir := persistDir(t)
		k := startKeeping(t, w, dir, h.Machine(), time.Hour)
		m, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
		if err := os.Remove(m[0]); err != nil {
			t.Fatal(err)
		}
		if err, done := k.ended(executortest.Patience); !done || err != nil {
			t.Fatalf("ended %v, %v", done, err)
		}
	})

	t.Run("one helper per machine", func(t *testing.T) {
		dir := persistDir(t)
		startKeeping(t, w, dir, h.Machine(), time.Hour)
		c, cancel := context.WithTimeout(context.Background(), executortest.Patience)
		defer cancel()
		if err := w.transport(t, keepOpts(dir, time.Hour)).KeepConnection(c, h.Machine()); err != nil || c.Err() != nil {
			t.Fatalf("a second helper: %v (context %v)", err, c.Err())
		}
	})

	t.Run("link dropped", func(t *testing.T) {
		w2, machine, proxy := proxied(t, w, h)
		dir := persistDir(t)
		k := startKeeping(t, w2, dir, machine, time.Hour)
		lost := make(chan bool, 4)
		tr := w2.transport(t, func(o *Options) {
			keepOpts(dir, time.Hour)(o)
			o.OnLink = func(_ string, up bool, _ error) { lost <- !up }
		})
		host, _ := tr.Host(machine)
		defer host.Close()
		if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		proxy.Stall()
		if err, done := k.ended(executortest.Patience); !done || err != nil {
			t.Fatalf("a helper whose link stalled: ended %v, %v", done, err)
		}
		// Its client is told, as it would be of its own link.
		select {
		case down := <-lost:
			if !down {
				t.Fatal("told the link came up")
			}
		case <-time.After(executortest.Patience):
			t.Fatal("the client was not told its link dropped")
		}
		proxy.Resume()
		proxy.Drop()
		// The next command dials the machine itself (no helper answers).
		if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
			t.Fatalf("after the link came back: %v", err)
		}
		if tr.Dials() != 1 {
			t.Errorf("dialled %d times after the helper ended, want 1", tr.Dials())
		}
	})

	t.Run("stale socket", func(t *testing.T) {
		dir := persistDir(t)
		started := make(chan string, 1)
		tr := w.transport(t, func(o *Options) {
			keepOpts(dir, time.Hour)(o)
			o.StartPersist = func(m string) { started <- m }
		})
		host, _ := tr.Host(h.Machine())
		defer host.Close()
		f, ok := tr.persistFiles(host)
		if !ok {
			t.Fatal("no helper files")
		}
		// A socket nobody listens on, as a killed helper leaves it.
		ln, err := net.Listen("unix", f.sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		if _, err := host.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		if tr.Dials() != 1 || tr.ViaHelper() != 0 {
			t.Errorf("dials %d, via helper %d; want 1 and 0", tr.Dials(), tr.ViaHelper())
		}
		select {
		case m := <-started:
			if m != h.Machine() {
				t.Errorf("a helper was started for %q", m)
			}
		default:
			t.Error("no helper was started after the dial")
		}
		// The new helper takes the stale socket's place.
		startKeeping(t, w, dir, h.Machine(), time.Hour)
		tr2 := client(t, w, dir)
		host2, _ := tr2.Host(h.Machine())
		defer host2.Close()
		if _, err := host2.Run(ctx(t), executor.Command{Args: []string{"true"}}); err != nil || tr2.ViaHelper() != 1 {
			t.Fatalf("through the new helper: %v (via helper %d)", err, tr2.ViaHelper())
		}
	})
}

// TestTerminalThroughAKeptConnection: an attach (`launcher attach`, mon
// panes) asks for a PTY before its command, so the helper gives it a channel
// of its own instead of one of its started shells; input, output and the
// exit code pass as over a connection of its own.
func TestTerminalThroughAKeptConnection(t *testing.T) {
	_, _, tr, host := throughAHelper(t)
	for i := 0; i < 3; i++ { // more than the helper keeps started shells
		var out strings.Builder
		code, err := host.RunTerminal(ctx(t), executor.Command{Args: []string{"sh", "-c", `tty; read x; echo "got $x"; exit 3`}},
			strings.NewReader("hello\n"), &out, &out)
		if err != nil || code != 3 || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "got hello") {
			t.Fatalf("terminal %d: exit %d, %v\n%s", i, code, err, out.String())
		}
	}
	if res, err := host.Run(ctx(t), executor.Command{Args: []string{"echo", "after"}}); err != nil || strings.TrimSpace(string(res.Stdout)) != "after" {
		t.Fatalf("a command after the terminals: %q %v", res.Stdout, err)
	}
	if tr.ViaHelper() != 1 || tr.Dials() != 0 {
		t.Errorf("via helper %d, dials %d; want 1 and 0", tr.ViaHelper(), tr.Dials())
	}
}
