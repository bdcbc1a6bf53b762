package engine

import (
	"context"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// procOp is one process's part of an operation (a start or a stop): what
// each of its steps needs, in one value instead of a long parameter list.
type procOp struct {
	em    emitter
	p     *config.Process
	r     *config.Resolved // the resolved process of a start; nil for a stop
	level int
	m     executor.Machine
	snaps *snapshots
}

// newProcOp dials (or reuses) the process's machine. A failure is reported
// as the process's Failed event.
func (e *Engine) newProcOp(ctx context.Context, em emitter, p *config.Process, r *config.Resolved, level int) (*procOp, error) {
	if r == nil {
		// A start said so before waiting for its dependencies.
		connecting(em, p, level)
	}
	m, snaps, err := e.machine(ctx, p.Machine)
	o := &procOp{em: em, p: p, r: r, level: level, m: m, snaps: snaps}
	if err != nil {
		return nil, o.failed(err)
	}
	return o, nil
}

// failed reports err as the process's Failed event and returns it.
func (o *procOp) failed(err error) error {
	o.em.emit(Failed, o.p, o.level, "%v", err)
	return err
}

// procLock is the engine's per-process lock as held by one step: unlock is
// idempotent, so a step can release it early and still defer the release.
type procLock struct {
	mu    *procMutex
	held  bool
	since time.Time // when the holder before this one let go
}

func (l *procLock) lock() {
	if !l.held {
		l.since = l.mu.Lock()
		l.held = true
	}
}

func (l *procLock) unlock() {
	if l.held {
		l.mu.Unlock()
		l.held = false
	}
}

// connecting emits the Connecting event of a step on a remote machine.
func connecting(em emitter, p *config.Process, level int) {
	if p.Machine != executor.Local {
		em.emit(Connecting, p, level, "connecting to %s", p.Machine)
	}
}
