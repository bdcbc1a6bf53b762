// Package pool hands out one executor.Machine per machine string: the local
// host, or a shared connection to a remote one. Concurrent requests for the
// same machine share one dial; a failed dial is not cached.
package pool

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/local"
	"github.com/robotlauncher/launcher/executor/tmux"
)

// Options configure a Pool.
type Options struct {
	// TmuxSocket selects the local tmux server (-S); remote machines use
	// their default server.
	TmuxSocket string
	// TmuxConfig is passed to tmux with -f (local only).
	TmuxConfig string
	// LogDir overrides the log directory on every machine (config log_dir).
	LogDir string
	// Remote dials a remote machine; nil means remote machines are not
	// supported by this build.
	Remote func(ctx context.Context, machine string) (executor.Host, error)
	// Trace, when set, receives a line for every command run on a machine.
	Trace io.Writer
}

// Pool implements executor.Connector.
type Pool struct {
	opts     Options
	traceMu  sync.Mutex
	t0       time.Time
	mu       sync.Mutex
	machines map[string]*entry
}

type entry struct {
	ready chan struct{}
	m     executor.Machine
	err   error
}

var _ executor.Connector = (*Pool)(nil)

// New returns an empty pool.
func New(o Options) *Pool { return &Pool{opts: o, machines: map[string]*entry{}, t0: time.Now()} }

// Machine returns the machine for name, dialling it on first use.
func (p *Pool) Machine(ctx context.Context, name string) (executor.Machine, error) {
	if name == "" {
		name = executor.Local
	}
	p.mu.Lock()
	e := p.machines[name]
	if e != nil {
		p.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err == nil {
			return e.m, nil
		}
		p.mu.Lock()
		if p.machines[name] == e {
			delete(p.machines, name) // failures are not cached
		}
		p.mu.Unlock()
		return p.Machine(ctx, name)
	}
	e = &entry{ready: make(chan struct{})}
	p.machines[name] = e
	p.mu.Unlock()
	e.m, e.err = p.dial(ctx, name)
	close(e.ready)
	if e.err != nil {
		p.mu.Lock()
		if p.machines[name] == e {
			delete(p.machines, name)
		}
		p.mu.Unlock()
	}
	return e.m, e.err
}

// Invalidate drops the cached machine (after its link broke), so the next
// use dials again.
func (p *Pool) Invalidate(name string) {
	p.mu.Lock()
	e := p.machines[name]
	delete(p.machines, name)
	p.mu.Unlock()
	if e != nil {
		<-e.ready
		if e.m != nil {
			_ = e.m.Close()
		}
	}
}

func (p *Pool) trace(h executor.Host) executor.Host {
	if p.opts.Trace == nil {
		return h
	}
	t := traceHost{Host: h, mu: &p.traceMu, out: p.opts.Trace, t0: p.t0}
	if _, ok := h.(executor.GroupRunner); ok {
		return traceGroupHost{t}
	}
	return t
}

func (p *Pool) dial(ctx context.Context, name string) (executor.Machine, error) {
	if name == executor.Local {
		// The state directory is found on the machine by the one rule
		// (tmux.StateDirRule), locally as over SSH.
		return tmux.New(ctx, p.trace(local.Host{}), tmux.Options{Socket: p.opts.TmuxSocket, Config: p.opts.TmuxConfig,
			LogDir: p.opts.LogDir})
	}
	if p.opts.Remote == nil {
		return nil, &executor.UnavailableError{Machine: name, Op: "connect",
			Err: fmt.Errorf("remote machines are %w by this build", executor.ErrNotSupported)}
	}
	h, err := p.opts.Remote(ctx, name)
	if err != nil {
		return nil, err
	}
	m, err := tmux.New(ctx, p.trace(h), tmux.Options{LogDir: p.opts.LogDir})
	if err != nil {
		if c, ok := h.(interface{ Close() error }); ok {
			_ = c.Close()
		}
		return nil, err
	}
	return m, nil
}

// Close closes every machine.
func (p *Pool) Close() error {
	p.mu.Lock()
	es := p.machines
	p.machines = map[string]*entry{}
	p.mu.Unlock()
	for _, e := range es {
		<-e.ready
		if e.m != nil {
			_ = e.m.Close()
		}
	}
	return nil
}
