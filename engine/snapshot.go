package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// ListTimeout bounds one listing of a machine's windows: a tmux server that
// is stopped (SIGSTOP) or hung makes the machine UNAVAILABLE instead of
// blocking a status.
const ListTimeout = 10 * time.Second

// snapshots coalesces window listings per machine: every goroutine waiting
// for a process on that machine (readiness, stop, one-shot exit) shares one
// `tmux list-windows` instead of running its own.
type snapshots struct {
	m        executor.Machine
	mu       sync.Mutex
	last     *snapCall
	inflight *snapCall
}

type snapCall struct {
	start time.Time
	done  chan struct{}
	snap  executor.Snapshot
	err   error
}

// get returns a snapshot whose query started at or after `after`.
func (s *snapshots) get(ctx context.Context, after time.Time) (executor.Snapshot, error) {
	for {
		s.mu.Lock()
		if s.last != nil && !s.last.start.Before(after) {
			snap := s.last.snap
			s.mu.Unlock()
			return snap, nil
		}
		call := s.inflight
		if call == nil {
			call = &snapCall{start: time.Now(), done: make(chan struct{})}
			s.inflight = call
			s.mu.Unlock()
			// The listing is shared: one caller's cancellation must not fail
			// the others, so it runs on its own bounded context, and every
			// caller (this one included) waits for it or for its own ctx:
			// Ctrl-C acts at once even when the tmux server hangs.
			go func() {
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ListTimeout)
				call.snap, call.err = s.m.Snapshot(lctx)
				if call.err != nil && lctx.Err() == context.DeadlineExceeded {
					call.err = &executor.UnavailableError{Machine: s.m.Machine(), Op: "list windows",
						Err: fmt.Errorf("tmux did not answer within %s (is its server stopped or hung?)", ListTimeout)}
				}
				cancel()
				s.mu.Lock()
				s.inflight = nil
				if call.err == nil {
					s.last = call
				}
				s.mu.Unlock()
				close(call.done)
			}()
		} else {
			s.mu.Unlock()
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return executor.Snapshot{}, ctx.Err()
		}
		if !call.start.Before(after) {
			return call.snap, call.err
		}
	}
}

// offer records a listing obtained with a write (a ready mark set and the
// windows listed in one invocation) whose query started at start: callers
// that accept a listing that recent need not ask again.
func (s *snapshots) offer(start time.Time, snap executor.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || s.last.start.Before(start) {
		c := &snapCall{start: start, done: make(chan struct{}), snap: snap}
		close(c.done)
		s.last = c
	}
}
