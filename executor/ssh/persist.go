package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// A kept connection is what OpenSSH calls ControlPersist: a helper process
// (`launcher ssh-persist MACHINE`) holds a machine's SSH connection after
// the command that needed it has ended, and later commands reach the
// machine through it over a unix socket in the per-user state directory
// instead of dialling again. On a robot's 50 ms link the connection (TCP,
// key exchange, authentication) is about 8 round trips, more than most
// operations themselves cost.
//
// The helper speaks SSH on its socket too: each command's client does an
// SSH handshake with it (local, no round trip to the machine), and every
// channel it opens is opened on the machine's connection and spliced, with
// its requests (exec, signal, pty, window size, exit status) passed on in
// order. Host keys were verified when the helper dialled; the socket is
// trusted because its directory is the user's alone (0700), and the client
// pins the helper's own key, written beside the socket, so a stale socket
// of an earlier helper is not mistaken for the current one.

// maxSockPath is the longest unix socket path Linux accepts (sun_path).
const maxSockPath = 107

// persistFiles are the files of one machine's helper.
type persistFiles struct{ sock, pub, lock string }

// persistFiles names the helper's files for h: one helper per machine and
// per everything that picks its connection (where it leads, which keys and
// known_hosts), so two configs never share a connection they would not
// have made alike. ok is false when keeping connections is off or the path
// would be too long for a unix socket.
func (t *Transport) persistFiles(h *Host) (persistFiles, bool) {
	if t.opts.Persist <= 0 || t.opts.PersistDir == "" {
		return persistFiles{}, false
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00%s\x00%q\x00%q\x00%q\x00%q\x00%q", h.machine, h.target, h.target.ProxyJump,
		h.target.IdentityFiles, h.target.KnownHosts, t.opts.Keys, t.keys.files)
	base := filepath.Join(t.opts.PersistDir, hex.EncodeToString(sum.Sum(nil))[:16])
	f := persistFiles{sock: base + ".sock", pub: base + ".pub", lock: base + ".lock"}
	if len(f.sock) > maxSockPath {
		return persistFiles{}, false
	}
	return f, true
}

// viaHelper connects to the machine's helper; an error means there is none
// that answers (the caller dials the machine itself).
func viaHelper(ctx context.Context, f persistFiles) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", f.sock)
	if err != nil {
		return nil, err
	}
	pubText, err := os.ReadFile(f.pub)
	if err != nil {
		conn.Close()
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cfg := &ssh.ClientConfig{User: "launcher", HostKeyCallback: ssh.FixedHostKey(pub)}
	c, chans, reqs, err := ssh.NewClientConn(conn, "launcher-persist", cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// open connects h: through its helper when one answers, else by dialling
// the machine, after which a helper is started to keep a connection for the
// commands that follow.
func (t *Transport) open(ctx context.Context, h *Host) (*ssh.Client, error) {
	start := time.Now()
	f, ok := t.persistFiles(h)
	if !ok {
		c, err := t.dial(ctx, h.target, 0)
		t.trace(h, start, err, "dialled (no kept connection)")
		return c, err
	}
	if c, err := viaHelper(ctx, f); err == nil {
		t.viaHelper.Add(1)
		t.trace(h, start, nil, "through the kept connection "+f.sock)
		return c, nil
	}
	c, err := t.dial(ctx, h.target, 0)
	if err == nil && t.opts.StartPersist != nil {
		// Only after a dial of our own succeeded: a host key to accept,
		// a password to type or a link that is down are said by that
		// dial, as without a helper.
		t.opts.StartPersist(h.machine)
	}
	t.trace(h, start, err, "dialled; a helper keeps the connection for the commands that follow")
	return c, err
}

// trace writes a line about a connection made (or not) to Options.Trace.
func (t *Transport) trace(h *Host, start time.Time, err error, how string) {
	if t.opts.Trace == nil {
		return
	}
	if err != nil {
		how = "failed: " + err.Error()
	}
	fmt.Fprintf(t.opts.Trace, "trace connect %s (%s) in %.1fms: %s\n", h.machine, h.target, float64(time.Since(start).Microseconds())/1000, how)
}

// ViaHelper counts the connections made through a helper so far.
func (t *Transport) ViaHelper() int64 { return t.viaHelper.Load() }

// KeepConnection is the helper's body: it dials machine, then serves its
// connection on a unix socket until no client has used it for the Persist
// duration, the link drops, the socket is removed (its state directory
// deleted) or ctx ends. It returns nil at once when another helper already
// keeps this machine's connection.
func (t *Transport) KeepConnection(ctx context.Context, machine string) error {
	h, err := t.Host(machine)
	if err != nil {
		return err
	}
	f, ok := t.persistFiles(h)
	if !ok {
		return errors.New("keeping connections is off (LAUNCHER_SSH_PERSIST) or the state directory's path is too long for a socket")
	}
	// The directory is made by the command that starts the helper; one
	// that is gone (a test's, a state directory deleted) is not made again.
	if _, err := os.Stat(t.opts.PersistDir); err != nil {
		return err
	}
	lock, err := os.OpenFile(f.lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil // another helper keeps it
	}
	up := &upstream{t: t, tg: h.target, down: make(chan struct{})}
	if _, err := up.add(ctx); err != nil {
		return err
	}
	defer up.close()
	go up.fillShells()

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	tmp := f.pub + ".tmp"
	if err := os.WriteFile(tmp, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, f.pub); err != nil {
		return err
	}
	_ = os.Remove(f.sock) // an earlier helper's, gone without cleaning up (the lock says so)
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		return err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	// The directory is the user's alone already; the socket says so too.
	if err := os.Chmod(f.sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	mine, err := os.Lstat(f.sock)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		// Remove the socket only while it is still ours.
		if fi, err := os.Lstat(f.sock); err == nil && os.SameFile(fi, mine) {
			_ = os.Remove(f.sock)
		}
	}()
	srv := &ssh.ServerConfig{NoClientAuth: true}
	srv.AddHostKey(signer)
	k := &keeper{up: up, srv: srv, clients: map[*ssh.ServerConn]bool{}, idle: make(chan struct{}, 1)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go k.serve(conn)
		}
	}()
	defer ln.Close()
	defer k.closeClients()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-up.down:
			return nil
		case <-k.idle:
			last = time.Now()
		case <-tick.C:
			if fi, err := os.Lstat(f.sock); err != nil || !os.SameFile(fi, mine) {
				return nil // its state directory was removed, or another took its place
			}
			if k.busy() {
				last = time.Now()
			} else if time.Since(last) >= t.opts.Persist {
				return nil
			}
		}
	}
}

// upstream is the helper's side toward the machine: one connection, and a
// few more when the server's session limit (sshd's MaxSessions) is reached
// by all the commands that share it.
type upstream struct {
	t    *Transport
	tg   target
	mu   sync.Mutex
	dial sync.Mutex
	cs   []*ssh.Client
	down chan struct{} // closed when any connection is lost

	shells  []*readyShell // started, waiting for a client
	filling int           // being started
	once    sync.Once
}

// maxUpstream bounds the connections a helper opens to one machine.
const maxUpstream = 4

func (u *upstream) add(ctx context.Context) (*ssh.Client, error) {
	c, err := u.t.dial(ctx, u.tg, 0)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.cs = append(u.cs, c)
	u.mu.Unlock()
	go func() {
		_ = keepAlive(c, u.t.opts.KeepAlive)
		// A lost link ends the helper: its clients see their connection
		// drop as they would have seen their own, and dial again.
		u.once.Do(func() { close(u.down) })
	}()
	return c, nil
}

func (u *upstream) close() {
	u.mu.Lock()
	cs := u.cs
	u.cs = nil
	u.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// openChannel opens a channel on the first connection that has room.
func (u *upstream) openChannel(typ string, extra []byte) (ssh.Channel, <-chan *ssh.Request, error) {
	u.mu.Lock()
	cs := append([]*ssh.Client(nil), u.cs...)
	u.mu.Unlock()
	var last error
	for _, c := range cs {
		ch, reqs, err := c.OpenChannel(typ, extra)
		if err == nil {
			return ch, reqs, nil
		}
		if !prohibited(err) {
			return nil, nil, err
		}
		last = err
	}
	u.dial.Lock()
	defer u.dial.Unlock()
	u.mu.Lock()
	n := len(u.cs)
	u.mu.Unlock()
	if n >= maxUpstream {
		return nil, nil, last
	}
	c, err := u.add(context.Background())
	if err != nil {
		return nil, nil, last
	}
	return c.OpenChannel(typ, extra)
}

// keeper serves the helper's clients.
type keeper struct {
	up      *upstream
	srv     *ssh.ServerConfig
	mu      sync.Mutex
	clients map[*ssh.ServerConn]bool
	closed  bool
	idle    chan struct{} // a client left
}

func (k *keeper) busy() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.clients) > 0
}

func (k *keeper) closeClients() {
	k.mu.Lock()
	k.closed = true
	cs := k.clients
	k.clients = map[*ssh.ServerConn]bool{}
	k.mu.Unlock()
	for c := range cs {
		_ = c.Close()
	}
}

func (k *keeper) serve(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(conn, k.srv)
	if err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		sc.Close()
		return
	}
	k.clients[sc] = true
	k.mu.Unlock()
	go func() {
		for r := range reqs {
			// keepalive@openssh.com and the like: this end is alive; the
			// machine's link has keepalives of its own, and its loss
			// closes this connection.
			if r.WantReply {
				_ = r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	for nc := range chans {
		go k.splice(nc)
	}
	_ = sc.Wait()
	k.mu.Lock()
	delete(k.clients, sc)
	k.mu.Unlock()
	select {
	case k.idle <- struct{}{}:
	default:
	}
}

// splice joins nc's channel to one on the machine: a shell the helper
// started beforehand when nc asks for one (a resident shell: the client's
// first command then costs one round trip, not three), else a channel
// opened for it now.
func (k *keeper) splice(nc ssh.NewChannel) {
	if nc.ChannelType() == "session" {
		if sh := k.up.takeShell(); sh != nil {
			lch, lreqs, err := nc.Accept()
			if err != nil {
				k.up.putShell(sh)
				return
			}
			first, ok := <-lreqs
			if !ok {
				k.up.putShell(sh)
				_ = lch.Close()
				return
			}
			if first.Type == "exec" && bytes.Equal(first.Payload, shExec) {
				if first.WantReply {
					_ = first.Reply(true, nil)
				}
				go k.up.fillShells()
				join(lch, lreqs, sh.ch, sh.reqs, nil)
				return
			}
			// Not a resident shell (a terminal, a stream): a channel of
			// its own, as below.
			k.up.putShell(sh)
			rch, rreqs, err := k.up.openChannel("session", nc.ExtraData())
			if err != nil {
				if first.WantReply {
					_ = first.Reply(false, nil)
				}
				_ = lch.Close()
				return
			}
			join(lch, lreqs, rch, rreqs, first)
			return
		}
	}
	rch, rreqs, err := k.up.openChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			_ = nc.Reject(oe.Reason, oe.Message)
		} else {
			_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		}
		return
	}
	lch, lreqs, err := nc.Accept()
	if err != nil {
		rch.Close()
		return
	}
	join(lch, lreqs, rch, rreqs, nil)
}

// join passes data and requests between a client's channel and the
// machine's until either closes. first, when set, is a request of the
// client's already read, passed on before the others.
func join(lch ssh.Channel, lreqs <-chan *ssh.Request, rch ssh.Channel, rreqs <-chan *ssh.Request, first *ssh.Request) {
	// Requests both ways, in order: exec, signal and window size toward
	// the machine; exit status back.
	go func() {
		pass := func(r *ssh.Request) {
			ok, err := rch.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				_ = r.Reply(ok && err == nil, nil)
			}
		}
		if first != nil {
			pass(first)
		}
		for r := range lreqs {
			pass(r)
		}
		// The client closed its channel.
		rch.Close()
	}()
	var out sync.WaitGroup
	out.Add(2)
	go func() {
		defer out.Done()
		_, _ = io.Copy(lch, rch)
	}()
	go func() {
		defer out.Done()
		_, _ = io.Copy(lch.Stderr(), rch.Stderr())
	}()
	go func() {
		_, _ = io.Copy(rch, lch)
		_ = rch.CloseWrite()
	}()
	for r := range rreqs {
		ok, err := lch.SendRequest(r.Type, r.WantReply, r.Payload)
		if r.WantReply {
			_ = r.Reply(ok && err == nil, nil)
		}
	}
	// The machine closed the channel: everything it sent is passed on
	// before the client's channel closes (its exit status is waited for
	// on that close).
	out.Wait()
	_ = lch.CloseWrite()
	_ = lch.Close()
}

// shExec is the payload of the exec request that starts a resident shell.
var shExec = ssh.Marshal(struct{ Command string }{"sh"})

// readyShells is how many started shells a helper keeps for its clients'
// first commands (each holds one of the server's sessions).
const readyShells = 2

// readyShell is a session on the machine whose `sh` has started.
type readyShell struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
}

// takeShell returns a started shell that is still alive, or nil.
func (u *upstream) takeShell() *readyShell {
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.shells) > 0 {
		sh := u.shells[0]
		u.shells = u.shells[1:]
		select {
		case <-sh.reqs:
			// It ended (an exit status, or its channel closed).
			_ = sh.ch.Close()
		default:
			return sh
		}
	}
	return nil
}

func (u *upstream) putShell(sh *readyShell) {
	u.mu.Lock()
	u.shells = append(u.shells, sh)
	u.mu.Unlock()
}

// fillShells starts shells until readyShells are waiting; never on a
// further connection (a session limit reached leaves them fewer).
func (u *upstream) fillShells() {
	for {
		u.mu.Lock()
		if len(u.shells)+u.filling >= readyShells || len(u.cs) == 0 {
			u.mu.Unlock()
			return
		}
		u.filling++
		c := u.cs[0]
		u.mu.Unlock()
		sh, err := startShell(c)
		u.mu.Lock()
		u.filling--
		if err == nil {
			u.shells = append(u.shells, sh)
		}
		u.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func startShell(c *ssh.Client) (*readyShell, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	ok, err := ch.SendRequest("exec", true, shExec)
	if err == nil && !ok {
		err = errors.New("exec refused")
	}
	if err != nil {
		_ = ch.Close()
		return nil, err
	}
	return &readyShell{ch: ch, reqs: reqs}, nil
}
