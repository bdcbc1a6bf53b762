package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/ssh"
)

// remoteDialer dials remote machines over SSH; the transport is created on
// first use of a remote machine.
func (s *session) remoteDialer() func(ctx context.Context, machine string) (executor.Host, error) {
	var once sync.Once
	var tr *ssh.Transport
	var trErr error
	return func(ctx context.Context, machine string) (executor.Host, error) {
		once.Do(func() { tr, trErr = s.sshTransport() })
		if trErr != nil {
			return nil, trErr
		}
		h, err := tr.Host(machine)
		if err != nil {
			return nil, &executor.UnavailableError{Machine: machine, Op: "resolve", Err: err}
		}
		return h, nil
	}
}

func (s *session) sshTransport() (*ssh.Transport, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := s.getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	o := ssh.Options{
		Home:        s.getenv("HOME"),
		AgentSocket: s.getenv("SSH_AUTH_SOCK"),
		AcceptNew:   s.acceptNew || truthy(s.getenv("LAUNCHER_ACCEPT_NEW_HOST_KEYS")),
	}
	if k := first("LAUNCHER_SSH_KEY", "CONCERT_LAUNCHER_SSH_KEY"); k != "" {
		o.Keys = []string{k}
	}
	if kh := first("LAUNCHER_KNOWN_HOSTS", "CONCERT_LAUNCHER_KNOWN_HOSTS"); kh != "" {
		o.KnownHosts = strings.Split(kh, ":")
	}
	if t := s.getenv("LAUNCHER_SSH_TIMEOUT"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return nil, usageErr("LAUNCHER_SSH_TIMEOUT=%q is not a duration (use 5s)", t)
		}
		o.ConnectTimeout = d
	}
	if f, ok := s.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// Passwords only when a person can type them; never stored.
		var mu sync.Mutex
		o.Prompt = func(q string, echo bool) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprint(s.stderr, q)
			if echo {
				var line string
				_, err := fmt.Fscanln(f, &line)
				return line, err
			}
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(s.stderr)
			return string(b), err
		}
	}
	if s.getenv("LAUNCHER_TRACE") != "" {
		o.Trace = s.traceOut
	}
	if err := s.persistOptions(&o); err != nil {
		return nil, err
	}
	return ssh.New(o)
}

// reachEnv is the environment that decides how machines are reached (keys,
// known_hosts, timeouts, the state directory, kept connections), as K=V,
// for a launcher this one starts elsewhere: a mon pane, an ssh-persist
// helper.
func (s *session) reachEnv() []string {
	var env []string
	for _, k := range []string{"LAUNCHER_SSH_KEY", "CONCERT_LAUNCHER_SSH_KEY", "LAUNCHER_KNOWN_HOSTS",
		"CONCERT_LAUNCHER_KNOWN_HOSTS", "LAUNCHER_SSH_TIMEOUT", "LAUNCHER_STATE_DIR", "LAUNCHER_ACCEPT_NEW_HOST_KEYS",
		"LAUNCHER_SSH_PERSIST", "SSH_AUTH_SOCK", "HOME", "XDG_STATE_HOME"} {
		if v := s.getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true
	}
	return false
}
