package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor"
)

// journalMax is the size at which the event journal is rotated (one
// rotated file is kept): a few thousand events, a robot's recent history.
var journalMax int64 = 1 << 20 // a variable for the tests

// journal keeps the events of every launcher that acts (run, kill, serve,
// scripts…) in <state dir>/<session>/events.jsonl on the machine launcher
// runs on, so a bundle taken after a crash has the recent history.
// Output lines are not kept (the logs have them). The file is opened at
// the first event: commands that emit none never touch it.
type journal struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
	// failed: the state directory could not be used; the journal is off
	// for this run (an operation never fails for its journal).
	failed bool
	// torn: the last write stopped short (a full disk); the next starts
	// on a line of its own, so only the torn event is lost.
	torn  bool
	dir   func() (string, error)
	unsub func()
}

// events.jsonl's folder is found through the local machine (its state
// directory, checked 0700 and the caller's).
func (s *session) startJournal(e *engine.Engine, session string) {
	j := &journal{dir: func() (string, error) {
		m, err := s.pool.Machine(s.ctx, executor.Local)
		if err != nil {
			return "", err
		}
		sd, ok := m.(interface {
			StateDir(context.Context) (string, error)
		})
		if !ok {
			return "", os.ErrNotExist
		}
		dir, err := sd.StateDir(s.ctx)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, session), nil
	}}
	s.journal = j
	j.unsub = e.Bus().Subscribe(func(ev engine.Event) bool { return ev.Kind != engine.Output }, j.write)
}

// journalPath is where the journal of session is kept under dir.
func journalPath(dir string) string { return filepath.Join(dir, "events.jsonl") }

func (j *journal) write(ev engine.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed {
		return
	}
	if j.f == nil {
		dir, err := j.dir()
		if err == nil {
			err = os.MkdirAll(dir, 0o700)
		}
		if err != nil {
			j.failed = true
			return
		}
		j.path = journalPath(dir)
		if err := j.open(); err != nil {
			j.failed = true
			return
		}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	b = append(b, '\n')
	if j.size+int64(len(b)) > journalMax {
		// Another launcher may rotate at the same moment: the rename of
		// one wins, no event is lost (each writes to the file it holds).
		_ = j.f.Close()
		_ = os.Rename(j.path, j.path+".1")
		if err := j.open(); err != nil {
			j.failed = true
			return
		}
		j.torn = false
	}
	if j.torn {
		b = append([]byte{'\n'}, b...)
	}
	n, _ := j.f.Write(b)
	j.size += int64(n)
	switch {
	case n == len(b):
		j.torn = false
	case n > 0:
		j.torn = true
	}
}

func (j *journal) open() error {
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	j.f, j.size = f, fi.Size()
	return nil
}

// close writes the events still queued and releases the file.
func (j *journal) close() {
	j.unsub()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
}
