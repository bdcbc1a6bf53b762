package ssh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/shell"
	"golang.org/x/crypto/ssh"
)

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
			// The server's session limit: give back an idle resident
			// shell's session, or wait for one to end.
			if h.shedResident() {
				continue
			}
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

// runResident runs cmd in a resident shell (ok false: none could be had,
// run it on a session of its own).
func (h *Host) runResident(ctx context.Context, cmd executor.Command) (executor.Result, error, bool) {
	r, err := h.takeResident(ctx)
	if err != nil {
		return executor.Result{}, err, true
	}
	if r == nil {
		return executor.Result{}, nil, false
	}
	res, err := r.run(ctx, cmd)
	switch {
	case err == nil:
		h.mu.Lock()
		if h.client == r.c && !h.closed {
			h.idle = append(h.idle, r)
			r = nil
		}
		h.mu.Unlock()
		if r != nil {
			r.close()
		}
		return res, nil, true
	case ctx.Err() != nil:
		return res, err, true
	default:
		// The shell ended under the command: the link broke (or someone
		// killed it); the command's fate is unknown, like a session's that
		// lost its link.
		if _, cerr := h.conn(ctx); cerr != nil {
			return executor.Result{}, cerr, true
		}
		return executor.Result{}, h.unavailable("exec", err), true
	}
}

// takeResident returns an idle resident shell on the current connection, or
// starts one; nil when the machine cannot keep one.
func (h *Host) takeResident(ctx context.Context) (*resident, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.noRes {
		h.mu.Unlock()
		return nil, nil
	}
	for len(h.idle) > 0 {
		r := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if r.c == c && r.alive() {
			h.mu.Unlock()
			return r, nil
		}
		r.close() // from a connection that was dropped, or it died idle
	}
	h.mu.Unlock()
	r, err := startResident(c)
	if errors.Is(err, errNoResident) {
		h.mu.Lock()
		h.noRes = true
		h.mu.Unlock()
	}
	if err != nil {
		// At the session limit, or a broken link: a session of its own
		// waits for a free one, or re-dials and says what broke.
		return nil, nil
	}
	return r, nil
}

// shedResident closes one idle resident shell, giving its session back to
// the server's limit.
func (h *Host) shedResident() bool {
	h.mu.Lock()
	if len(h.idle) == 0 {
		h.mu.Unlock()
		return false
	}
	r := h.idle[0]
	h.idle = h.idle[1:]
	h.mu.Unlock()
	r.close()
	return true
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
	if res, err, ok := h.runResident(ctx, cmd); ok {
		return res, err
	}
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
