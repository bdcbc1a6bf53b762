package tmux

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/robotlauncher/launcher/executor"
)

// scripts are the helper scripts a machine runs (pane prologue, log
// writers), installed once into the per-user state directory under names
// that carry a hash of their content: an old launcher's helpers never
// shadow a new one's, and nothing lives in shared /tmp.
type scripts struct {
	mu     sync.Mutex
	done   bool
	dir    string // <state>/bin
	runDir string // <state>/run: one env file per spawn, removed once read
	writer string // "perl" or "bash": the log writer this machine can run
}

func (s *scripts) path(content, name string) string {
	sum := sha256.Sum256([]byte(content))
	return s.dir + "/" + name + "-" + hex.EncodeToString(sum[:6])
}

//go:embed scripts/prepare.sh
var prepareScript string

// helpers are the files install puts in <state>/bin.
var helpers = []struct{ content, name string }{{perlWriter, "logwriter.pl"}, {bashWriter, "logwriter.bash"}, {prologue, "prologue.bash"}}

// prepareErr turns a failed prepare.sh into an error: exit 3 is a refusal
// (a directory other users could write), which is bad input, not a fault.
func (m *Machine) prepareErr(what string, res executor.Result) error {
	msg := strings.TrimSpace(string(res.Stderr))
	if res.ExitCode == 3 {
		return &UnsafePathError{Machine: m.Machine(), Msg: strings.TrimPrefix(msg, "launcher: ")}
	}
	return fmt.Errorf("cannot prepare %s on %s: %s", what, m.Machine(), msg)
}

// UnsafePathError is a state, log or helper directory that another user
// could write: launcher refuses to use it.
type UnsafePathError struct {
	Machine string
	Msg     string
}

func (e *UnsafePathError) Error() string { return e.Msg + " (on " + e.Machine + ")" }

// install checks the state directory, puts the helper scripts in place
// (once per Machine) and finds out whether Perl runs the Perl writer
// (fast writer, millisecond timestamps) or the bash writer must do.
func (m *Machine) install(ctx context.Context) error {
	return m.installWith(ctx, "")
}

// installWith is install that also prepares logDir as ensureDir does, in
// the same command when the helpers are not in place yet.
func (m *Machine) installWith(ctx context.Context, logDir string) error {
	s := &m.scripts
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		if logDir == "" {
			return nil
		}
		return m.ensureDir(ctx, logDir)
	}
	defer s.mu.Unlock()
	state := strings.TrimRight(m.opts.StateDir, "/")
	s.dir, s.runDir = state+"/bin", state+"/run"
	mode := "install"
	if logDir != "" {
		mode += ":" + logDir
	}
	args := []string{"sh", "-c", prepareScript, "sh", mode, state}
	var local [][2]string
	for _, f := range helpers {
		p := s.path(f.content, f.name)
		args = append(args, p[strings.LastIndex(p, "/")+1:], f.content)
		local = append(local, [2]string{p[strings.LastIndex(p, "/")+1:], f.content})
	}
	var res executor.Result
	var err error
	if executor.IsLocal(m.Host) {
		res = prepareLocal("install", state, local, logDir)
	} else if res, err = m.Host.Run(ctx, executor.Command{Args: args}); err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return m.prepareErr("launcher's state directory "+state, res)
	}
	s.writer = strings.TrimSpace(string(res.Stdout))
	s.done = true
	if logDir != "" {
		m.dirMu.Lock()
		m.dirs[logDir] = true
		m.dirMu.Unlock()
	}
	return nil
}

// ensureDir creates a log directory (and its parents) with mode 0700 and
// checks that no other user can write it, once.
func (m *Machine) ensureDir(ctx context.Context, dir string) error {
	// Held while creating: concurrent spawns wait instead of each running
	// their own mkdir.
	m.dirMu.Lock()
	defer m.dirMu.Unlock()
	if m.dirs[dir] {
		return nil
	}
	var res executor.Result
	var err error
	if executor.IsLocal(m.Host) {
		res = prepareLocal("dir", dir, nil, "")
	} else if res, err = m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", prepareScript, "sh", "dir", dir}}); err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return m.prepareErr("the log directory "+dir, res)
	}
	m.dirs[dir] = true
	return nil
}

// StateDir is the machine's per-user state directory, checked (0700,
// owned by the caller, as for every run) and created when missing: a
// place for launcher's own files (the serve token).
func (m *Machine) StateDir(ctx context.Context) (string, error) {
	if err := m.resolve(ctx); err != nil {
		return "", err
	}
	if err := m.install(ctx); err != nil {
		return "", err
	}
	return strings.TrimRight(m.opts.StateDir, "/"), nil
}
