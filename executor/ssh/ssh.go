// Package ssh runs commands on remote machines over one shared SSH
// connection per machine (golang.org/x/crypto/ssh): the executor.Host for
// every machine that is not "local". It honours ~/.ssh/config (HostName,
// User, Port, IdentityFile, ProxyJump), the agent, and known_hosts, which it
// never ignores. A connection can outlive the command that dialled it, kept
// by a helper process for the commands that follow (persist.go).
package ssh

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/robotlauncher/launcher/executor"
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
	// Persist is how long a kept connection outlives its last use (see
	// KeepConnection); 0 keeps none.
	Persist time.Duration
	// PersistDir holds the kept connections' sockets: a directory only
	// the user can enter (the state directory's ssh/).
	PersistDir string
	// StartPersist starts a helper that keeps machine's connection; it is
	// called after a command dialled the machine itself.
	StartPersist func(machine string)
	// Trace, when set, gets a line for each connection made: dialled, or
	// through a kept connection (LAUNCHER_TRACE).
	Trace io.Writer
}

// Transport dials machines and shares one connection per machine.
type Transport struct {
	opts  Options
	cfg   *sshConfig
	keys  *hostKeys
	dials atomic.Int64

	viaHelper atomic.Int64
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
	idle    []*resident  // resident shells waiting for a command
	noRes   bool         // the machine cannot keep a resident shell
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

// Close closes the connection.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	c := h.client
	h.client = nil
	extra := h.extra
	h.extra = nil
	idle := h.idle
	h.idle = nil
	h.mu.Unlock()
	for _, r := range idle {
		r.close()
	}
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
