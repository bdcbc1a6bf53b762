// Package ssh runs commands on remote machines over one shared SSH
// connection per machine (golang.org/x/crypto/ssh): the executor.Host for
// every machine that is not "local". It honours ~/.ssh/config (HostName,
// User, Port, IdentityFile, ProxyJump), the agent, and known_hosts, which it
// never ignores.
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/shell"
)

// Options configure the SSH transport.
type Options struct {
	// Home is the local home directory (~/.ssh); empty: $HOME.
	Home string
	// KnownHosts files; empty: ~/.ssh/known_hosts (plus UserKnownHostsFile
	// from ssh_config).
	KnownHosts []string
	// Keys are explicit private key files tried first.
	Keys []string
	// AcceptNew records unknown host keys instead of refusing them.
	AcceptNew bool
	// AgentSocket is $SSH_AUTH_SOCK ("" = no agent).
	AgentSocket string
	// ConnectTimeout bounds dialling and the handshake (default 5s).
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive requests (default 1s); a link
	// that answers none for 2 intervals plus a second is dropped, so a dead
	// link is noticed within a few seconds.
	KeepAlive time.Duration
	// Prompt asks the user for a password or a keyboard-interactive answer;
	// nil (no terminal) disables those methods.
	Prompt func(question string, echo bool) (string, error)
	// OnLink is told when a machine's link goes down or comes back.
	OnLink func(machine string, up bool, err error)
}

// Transport dials machines and shares one connection per machine.
type Transport struct {
	opts  Options
	cfg   *sshConfig
	keys  *hostKeys
	dials atomic.Int64
}

// New returns a Transport.
func New(o Options) (*Transport, error) {
	if o.Home == "" {
		o.Home, _ = os.UserHomeDir()
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = time.Second
	}
	cfg, err := loadSSHConfig(o.Home)
	if err != nil {
		return nil, err
	}
	files := o.KnownHosts
	if len(files) == 0 {
		files = []string{filepath.Join(o.Home, ".ssh", "known_hosts")}
	}
	return &Transport{opts: o, cfg: cfg, keys: &hostKeys{files: files, acceptNew: o.AcceptNew}}, nil
}

// Dials counts the TCP connections opened so far (jump hosts included).
func (t *Transport) Dials() int64 { return t.dials.Load() }

// Host returns the Host for machine without connecting yet: the connection
// is opened on first use, shared by all callers, and re-opened after a link
// drop.
func (t *Transport) Host(machine string) (*Host, error) {
	tg, err := t.cfg.resolve(machine)
	if err != nil {
		return nil, err
	}
	return &Host{t: t, machine: machine, target: tg}, nil
}

// Host is one remote machine.
type Host struct {
	t       *Transport
	machine string
	target  target

	mu      sync.Mutex
	client  *ssh.Client
	dialing chan struct{}
	lastErr error
	closed  bool
	wasUp   bool
	runSem  chan struct{}
	streams int          // streams on the shared connection
	extra   []*extraLink // connections that carry further streams
}

var (
	_ executor.Host     = (*Host)(nil)
	_ executor.Terminal = (*Host)(nil)
)

// Machine returns the machine string.
func (h *Host) Machine() string { return h.machine }

// Target describes where the machine string leads (for messages).
func (h *Host) Target() string { return h.target.String() }

func (h *Host) unavailable(op string, err error) error {
	var u *executor.UnavailableError
	if errors.As(err, &u) {
		return err
	}
	return &executor.UnavailableError{Machine: h.machine, Op: op, Err: err}
}

// conn returns the shared client, dialling it when there is none. Callers
// arriving while a dial is under way wait for it instead of dialling again.
func (h *Host) conn(ctx context.Context) (*ssh.Client, error) {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, h.unavailable("connect", errors.New("connection closed"))
		}
		if h.client != nil {
			c := h.client
			h.mu.Unlock()
			return c, nil
		}
		if h.dialing != nil {
			ch := h.dialing
			h.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			h.mu.Lock()
			c, err := h.client, h.lastErr
			h.mu.Unlock()
			if c != nil {
				return c, nil
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		ch := make(chan struct{})
		h.dialing = ch
		h.mu.Unlock()
		c, err := h.t.dial(ctx, h.target, 0)
		h.mu.Lock()
		h.dialing = nil
		if err != nil {
			err = h.unavailable("connect", err)
			h.lastErr = err
			h.mu.Unlock()
			close(ch)
			return nil, err
		}
		h.client, h.lastErr = c, nil
		back := h.wasUp
		h.wasUp = true
		h.mu.Unlock()
		close(ch)
		if back && h.t.opts.OnLink != nil {
			h.t.opts.OnLink(h.machine, true, nil)
		}
		go h.watch(c)
		return c, nil
	}
}

// watch keeps the link alive and drops the client when it dies, so the next
// use dials again. Pending sessions fail at once.
func (h *Host) watch(c *ssh.Client) {
	why := keepAlive(c, h.t.opts.KeepAlive)
	h.mu.Lock()
	if h.client == c {
		h.client = nil
		h.lastErr = h.unavailable("keepalive", why)
	}
	closed := h.closed
	h.mu.Unlock()
	if !closed && h.t.opts.OnLink != nil {
		h.t.opts.OnLink(h.machine, false, why)
	}
}

// keepAlive sends keepalive requests every interval until the link fails
// (no answer within two intervals plus a second), then closes the client
// and returns why.
func keepAlive(c *ssh.Client, every time.Duration) error {
	done := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(done)
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var why error
	for why == nil {
		select {
		case <-done:
			why = errors.New("connection lost")
		case <-tick.C:
			reply := make(chan error, 1)
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				reply <- err
			}()
			select {
			case err := <-reply:
				if err != nil {
					why = fmt.Errorf("connection lost: %w", err)
				}
			case <-time.After(2*every + time.Second):
				why = errors.New("no answer to keepalives: link down")
			case <-done:
				why = errors.New("connection lost")
			}
		}
	}
	_ = c.Close()
	return why
}

// dropClient forgets c after an operation found it broken.
func (h *Host) dropClient(c *ssh.Client) {
	h.mu.Lock()
	if h.client == c {
		h.client = nil
	}
	h.mu.Unlock()
	_ = c.Close()
}

// Close closes the connection.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	c := h.client
	h.client = nil
	extra := h.extra
	h.extra = nil
	h.mu.Unlock()
	for _, l := range extra {
		l.mu.Lock()
		if l.c != nil {
			_ = l.c.Close()
		}
		l.mu.Unlock()
	}
	if c != nil {
		return c.Close()
	}
	return nil
}

// dial opens a connection to tg, through its ProxyJump hops if any.
func (t *Transport) dial(ctx context.Context, tg target, depth int) (*ssh.Client, error) {
	if depth > 8 {
		return nil, errors.New("ProxyJump chain too long (a loop in ~/.ssh/config?)")
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if len(tg.ProxyJump) > 0 {
		hop, err := t.cfg.resolve(tg.ProxyJump[len(tg.ProxyJump)-1])
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %s: %w", tg.ProxyJump[len(tg.ProxyJump)-1], err)
		}
		hop.ProxyJump = append(hop.ProxyJump, tg.ProxyJump[:len(tg.ProxyJump)-1]...)
		jc, err := t.dial(ctx, hop, depth+1)
		if err != nil {
			return nil, fmt.Errorf("via jump host %s: %w", hop, err)
		}
		conn, err = jc.DialContext(ctx, "tcp", tg.addr())
		if err != nil {
			jc.Close()
			return nil, fmt.Errorf("jump host %s cannot reach %s: %w", hop, tg.addr(), err)
		}
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", tg.addr())
		if err != nil {
			return nil, err
		}
		t.dials.Add(1)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cfg := &ssh.ClientConfig{
		User:            tg.User,
		Auth:            t.auth(tg),
		HostKeyCallback: t.hostKeyCallback(tg),
		Timeout:         t.opts.ConnectTimeout,
	}
	keys := t.keysFor(tg)
	cfg.HostKeyAlgorithms = keys.knownKeyAlgorithms(knownHostsAddr(tg))
	type result struct {
		c   ssh.Conn
		ch  <-chan ssh.NewChannel
		req <-chan *ssh.Request
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, ch, req, err := ssh.NewClientConn(conn, tg.addr(), cfg)
		res <- result{c, ch, req, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		conn.Close()
		<-res
		return nil, fmt.Errorf("connecting to %s: %w", tg, ctx.Err())
	}
	if r.err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(r.err, &hk) {
			return nil, hk
		}
		return nil, fmt.Errorf("connecting to %s: %w", tg, r.err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(r.c, r.ch, r.req), nil
}

// knownHostsAddr is the name known_hosts uses for tg (as ssh(1) writes it).
func knownHostsAddr(tg target) string { return tg.addr() }

func (t *Transport) keysFor(tg target) *hostKeys {
	if len(tg.KnownHosts) == 0 && !tg.AcceptNew {
		return t.keys
	}
	files := append(append([]string{}, t.keys.files...), tg.KnownHosts...)
	return &hostKeys{files: files, acceptNew: t.keys.acceptNew || tg.AcceptNew}
}

func (t *Transport) hostKeyCallback(tg target) ssh.HostKeyCallback {
	keys := t.keysFor(tg)
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		return keys.verify(knownHostsAddr(tg), remote, key)
	}
}

// auth lists the authentication methods: explicit keys, the agent, the
// IdentityFiles of ssh_config, the default keys, then (only with a
// terminal) password and keyboard-interactive.
func (t *Transport) auth(tg target) []ssh.AuthMethod {
	var files []string
	files = append(files, t.opts.Keys...)
	files = append(files, tg.IdentityFiles...)
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		files = append(files, filepath.Join(t.opts.Home, ".ssh", n))
	}
	signers := func() ([]ssh.Signer, error) {
		var out []ssh.Signer
		seen := map[string]bool{}
		add := func(s ssh.Signer) {
			k := string(s.PublicKey().Marshal())
			if !seen[k] {
				seen[k] = true
				out = append(out, s)
			}
		}
		for _, f := range files[:len(t.opts.Keys)] {
			if s := loadKey(f); s != nil {
				add(s)
			}
		}
		if t.opts.AgentSocket != "" {
			if c, err := net.DialTimeout("unix", t.opts.AgentSocket, time.Second); err == nil {
				if ss, err := agent.NewClient(c).Signers(); err == nil {
					for _, s := range ss {
						add(s)
					}
				}
				// The agent connection must stay open while signing.
			}
		}
		for _, f := range files[len(t.opts.Keys):] {
			if s := loadKey(f); s != nil {
				add(s)
			}
		}
		return out, nil
	}
	methods := []ssh.AuthMethod{ssh.PublicKeysCallback(signers)}
	if p := t.opts.Prompt; p != nil {
		methods = append(methods,
			ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i, q := range questions {
					a, err := p(fmt.Sprintf("%s %s", tg, q), echos[i])
					if err != nil {
						return nil, err
					}
					answers[i] = a
				}
				return answers, nil
			}),
			ssh.PasswordCallback(func() (string, error) { return p(fmt.Sprintf("password for %s: ", tg), false) }))
	}
	return methods
}

func loadKey(path string) ssh.Signer {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil // encrypted keys go through the agent
	}
	return s
}

// script is the POSIX shell text that runs cmd. It is fed to `sh -s` on the
// remote machine's standard input, so the remote login shell (bash, zsh,
// fish, tcsh…) only ever parses "sh -s" and never the command itself.
func script(cmd executor.Command) string {
	var b strings.Builder
	if cmd.Dir != "" {
		b.WriteString("cd -- " + shell.Quote(cmd.Dir) + " || exit 1\n")
	}
	// Variables are exported by the script (never `env K=V` on a command
	// line, where every user of the machine could read them with ps).
	for _, e := range cmd.Env {
		b.WriteString(e.Name + "=" + shell.Quote(e.Value) + "; export " + e.Name + "\n")
	}
	b.WriteString("exec ")
	b.WriteString(shell.Join(cmd.Args))
	b.WriteString("\n")
	return b.String()
}

// commandLine is cmd as one line for the remote login shell, for the cases
// where standard input belongs to the command (a terminal).
func commandLine(cmd executor.Command) string {
	return "exec sh -c " + shell.Quote(strings.TrimSuffix(script(cmd), "\n"))
}

// sshd limits the sessions of one connection (MaxSessions, 10 by default).
// Short commands share the connection, at most runSlots at a time (others
// wait their turn: a bring-up of many processes stays on one TCP
// connection); long-running streams (log follows) take at most
// primaryStreams slots of it and then go to extra connections.
const (
	runSlots       = 6
	primaryStreams = 3
	streamsPerConn = 9
)

// prohibited tells a session refused by MaxSessions from a broken link.
func prohibited(err error) bool {
	s := err.Error()
	return strings.Contains(s, "administratively prohibited") || strings.Contains(s, "open failed")
}

// session opens a session on the shared connection, dialling if needed; a
// connection that cannot open sessions any more is dropped and re-dialled
// once.
func (h *Host) session(ctx context.Context) (*ssh.Client, *ssh.Session, error) {
	for attempt := 0; ; attempt++ {
		c, err := h.conn(ctx)
		if err != nil {
			return nil, nil, err
		}
		s, err := c.NewSession()
		if err == nil {
			return c, s, nil
		}
		if prohibited(err) && attempt < 200 {
			// The server's session limit: wait for one to end.
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		h.dropClient(c)
		if attempt > 0 {
			return nil, nil, h.unavailable("session", err)
		}
	}
}

// acquireRun takes one of the run slots of the shared connection.
func (h *Host) acquireRun(ctx context.Context) (func(), error) {
	h.mu.Lock()
	if h.runSem == nil {
		h.runSem = make(chan struct{}, runSlots)
	}
	sem := h.runSem
	h.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// streamSession opens a session for a long-running stream: on the shared
// connection while it has stream slots, else on an extra connection.
func (h *Host) streamSession(ctx context.Context) (*ssh.Session, func(), error) {
	h.mu.Lock()
	if h.streams < primaryStreams {
		h.streams++
		h.mu.Unlock()
		_, s, err := h.session(ctx)
		release := func() {
			h.mu.Lock()
			h.streams--
			h.mu.Unlock()
		}
		if err != nil {
			release()
			return nil, nil, err
		}
		return s, release, nil
	}
	var l *extraLink
	for _, x := range h.extra {
		if x.n < streamsPerConn {
			l = x
			break
		}
	}
	if l == nil {
		l = &extraLink{}
		h.extra = append(h.extra, l)
	}
	l.n++
	h.mu.Unlock()
	release := func() {
		h.mu.Lock()
		l.n--
		h.mu.Unlock()
	}
	c, err := l.get(ctx, h)
	if err != nil {
		release()
		return nil, nil, err
	}
	s, err := c.NewSession()
	if err != nil {
		l.drop(c)
		release()
		return nil, nil, h.unavailable("session", err)
	}
	return s, release, nil
}

// extraLink is an additional connection that carries streams.
type extraLink struct {
	mu sync.Mutex
	c  *ssh.Client
	n  int // streams using it (guarded by Host.mu)
}

func (l *extraLink) get(ctx context.Context, h *Host) (*ssh.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c, nil
	}
	c, err := h.t.dial(ctx, h.target, 0)
	if err != nil {
		return nil, h.unavailable("connect", err)
	}
	l.c = c
	go func() {
		_ = keepAlive(c, h.t.opts.KeepAlive)
		l.drop(c)
	}()
	return c, nil
}

func (l *extraLink) drop(c *ssh.Client) {
	l.mu.Lock()
	if l.c == c {
		l.c = nil
	}
	l.mu.Unlock()
	_ = c.Close()
}

// Run runs cmd remotely and captures its output.
func (h *Host) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	if len(cmd.Args) == 0 {
		return executor.Result{}, errors.New("ssh: empty command")
	}
	release, err := h.acquireRun(ctx)
	if err != nil {
		return executor.Result{}, err
	}
	defer release()
	c, s, err := h.session(ctx)
	if err != nil {
		return executor.Result{}, err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	line := "sh -s"
	if cmd.Stdin != nil {
		line = commandLine(cmd)
		s.Stdin = bytes.NewReader(cmd.Stdin)
	} else {
		s.Stdin = strings.NewReader(script(cmd))
	}
	if err := s.Start(line); err != nil {
		h.dropClient(c)
		return executor.Result{}, h.unavailable("exec", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		_ = s.Close()
		<-done
		return executor.Result{ExitCode: -1}, ctx.Err()
	}
	res := executor.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" && ee.ExitStatus() == 0 {
			res.ExitCode = 128 + signalNumber(ee.Signal())
		}
	default:
		// ExitMissingError, EOF: the link broke under the command.
		return res, h.unavailable("exec", err)
	}
	return res, nil
}

func signalNumber(name string) int {
	n := map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "TERM": 15, "PIPE": 13, "ALRM": 14, "ABRT": 6, "SEGV": 11}[name]
	if n == 0 {
		n = 1
	}
	return n
}

// Stream runs cmd remotely with its output readable as it comes.
func (h *Host) Stream(ctx context.Context, cmd executor.Command) (executor.Stream, error) {
	s, release, err := h.streamSession(ctx)
	if err != nil {
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		release()
		return nil, err
	}
	s.Stdin = strings.NewReader(script(cmd))
	if err := s.Start("sh -s"); err != nil {
		s.Close()
		release()
		return nil, h.unavailable("exec", err)
	}
	st := &stream{s: s, r: out, h: h, done: make(chan struct{}), release: release}
	go func() {
		select {
		case <-ctx.Done():
			st.Close()
		case <-st.done:
		}
	}()
	return st, nil
}

type stream struct {
	release  func()
	s        *ssh.Session
	r        io.Reader
	h        *Host
	done     chan struct{}
	once     sync.Once
	waitOnce sync.Once
	waitErr  error
}

func (st *stream) Read(p []byte) (int, error) {
	n, err := st.r.Read(p)
	if err == io.EOF {
		// EOF on a stream whose command did not exit cleanly is a lost link.
		if werr := st.Wait(); werr != nil {
			var ee *ssh.ExitError
			if !errors.As(werr, &ee) {
				return n, st.h.unavailable("stream", werr)
			}
		}
	}
	return n, err
}

func (st *stream) Wait() error {
	st.waitOnce.Do(func() { st.waitErr = st.s.Wait() })
	return st.waitErr
}

func (st *stream) Close() error {
	st.once.Do(func() {
		_ = st.s.Signal(ssh.SIGTERM)
		_ = st.s.Close()
		close(st.done)
		st.release()
	})
	return nil
}
