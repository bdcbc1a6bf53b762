package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

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
		c, err := h.t.open(ctx, h)
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
