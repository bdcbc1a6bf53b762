// Package tmux keeps processes in tmux windows on any executor.Host: it is the
// executor.Machine implementation for local and SSH hosts alike.
//
// Every tmux command is an argv (never a string typed into a shell); windows
// are addressed by their stable IDs ("@12") or by exact session and index, so
// tmux's prefix matching and the '.' pane separator in names never pick the
// wrong window. Launcher state lives in window user options (see
// executor.Marks), set in the same tmux invocation that creates the window.
package tmux

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/robotlauncher/launcher/executor"
)

var (
	// prologue is what the pane's interactive bash sources: it reads the
	// run's env file, frames the log with start and exit lines and runs the
	// user's command, which it gets from $LAUNCHER_CMD, never from a built
	// string.
	//go:embed scripts/prologue.bash
	prologue string
	//go:embed scripts/logwriter.pl
	perlWriter string
	//go:embed scripts/logwriter.bash
	bashWriter string
	//go:embed scripts/logfollow.pl
	perlFollower string
	//go:embed scripts/signal.sh
	signalScript string
	//go:embed scripts/signal_container.sh
	containerSignalScript string
)

// StateDirRule is the one rule for launcher's per-user state directory on
// a machine, local or remote, as shell: $LAUNCHER_STATE_DIR, else
// $XDG_STATE_HOME/launcher, else ~/.local/state/launcher.
const StateDirRule = `${LAUNCHER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/launcher}`

// Options configure a Machine.
type Options struct {
	// Socket selects the tmux server with -S; empty means tmux's default
	// server (which honours TMUX_TMPDIR on the machine).
	Socket string
	// Config is passed with -f; it matters only when launcher starts the
	// server. Empty lets tmux read the user's configuration.
	Config string
	// StateDir is the per-user state directory on the machine; empty
	// resolves $LAUNCHER_STATE_DIR, $XDG_STATE_HOME/launcher or
	// ~/.local/state/launcher there.
	StateDir string
	// LogDir overrides where logs go (default: StateDir). A leading "~/" is
	// the home directory on the machine.
	LogDir string
	// Home is the home directory on the machine; empty resolves it there.
	Home string
}

// Machine implements executor.Machine on top of a Host.
type Machine struct {
	executor.Host
	opts     Options
	logDir   string
	home     string
	spawnMu  sync.Mutex // guards sessions
	sessions map[string]*sessionState
	listing  chan struct{} // closed when allocate's listing is in (guarded by spawnMu)
	learned  bool          // sessions holds what a listing showed (guarded by spawnMu)
	started  startedAsker  // coalesced "has the run begun?" questions of stops
	batcher  batcher
	// fullGuard: this tmux refused the guard's lookup of a window by name
	// (see guard); spawns visit every window instead.
	fullGuard atomic.Bool
	// clockAhead is how far this machine's wall clock is ahead of ours
	// (nanoseconds), as last read (see learnClock); 0 for the local machine.
	clockAhead atomic.Int64
	clockRead  atomic.Int64 // when it was last read (Unix ns; 0: never)

	scripts   scripts
	resolveMu sync.Mutex
	resolved  bool
	dirMu     sync.Mutex
	dirs      map[string]bool // log directories known to exist
}

var (
	_ executor.Machine  = (*Machine)(nil)
	_ executor.Terminal = (*Machine)(nil)
	_ executor.Attacher = (*Machine)(nil)
)

// New returns a Machine for host. Directories not given in opts are looked
// up on the machine when first needed, so a status costs no extra command.
func New(ctx context.Context, host executor.Host, opts Options) (*Machine, error) {
	m := &Machine{Host: host, opts: opts, home: opts.Home, sessions: map[string]*sessionState{}, dirs: map[string]bool{}}
	if opts.StateDir != "" && opts.Home != "" {
		m.setLogDir()
		m.resolved = true
	}
	return m, nil
}

func (m *Machine) setLogDir() {
	m.logDir = m.opts.StateDir
	if m.opts.LogDir != "" {
		m.logDir = m.expandHome(m.opts.LogDir)
	}
}

// resolve looks up the state directory and the home directory on the
// machine, once.
func (m *Machine) resolve(ctx context.Context) error {
	m.resolveMu.Lock()
	defer m.resolveMu.Unlock()
	if m.resolved {
		return nil
	}
	if executor.IsLocal(m.Host) {
		// This process's own environment is the one a local sh would
		// expand the rule in: read here, without a shell (1.2 ms of a
		// 17 ms `run` of one process).
		m.setPaths(localPaths(os.Getenv))
		return nil
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", resolveRule}})
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
	if res.ExitCode != 0 || len(lines) != 2 {
		return fmt.Errorf("cannot resolve the state directory on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	m.setPaths(lines[0], lines[1])
	return nil
}

// localPaths is resolveRule (StateDirRule, then $HOME) evaluated with
// getenv: ${V:-word} takes word when V is unset or empty.
func localPaths(getenv func(string) string) (state, home string) {
	home = getenv("HOME")
	if v := getenv("LAUNCHER_STATE_DIR"); v != "" {
		return v, home
	}
	x := getenv("XDG_STATE_HOME")
	if x == "" {
		x = home + "/.local/state"
	}
	return x + "/launcher", home
}

// setPaths records the machine's state directory and home (resolveMu held).
func (m *Machine) setPaths(state, home string) {
	if m.resolved {
		return
	}
	if m.opts.StateDir == "" {
		m.opts.StateDir = state
	}
	if m.home == "" {
		m.home = home
	}
	m.setLogDir()
	m.resolved = true
}

// learnPaths is setPaths from a listing that found them out too.
func (m *Machine) learnPaths(state, home string) {
	m.resolveMu.Lock()
	defer m.resolveMu.Unlock()
	m.setPaths(state, home)
}

func (m *Machine) expandHome(p string) string {
	if p == "~" {
		return m.home
	}
	if strings.HasPrefix(p, "~/") {
		return strings.TrimRight(m.home, "/") + p[1:]
	}
	return p
}

// tmux returns the argv of a tmux invocation on this machine's server.
func (m *Machine) tmux(args ...string) []string {
	// -u: without a UTF-8 locale (common over SSH) tmux would replace the
	// \x1f field separator and any non-ASCII name with '_'.
	argv := []string{"tmux", "-u"}
	if m.opts.Socket != "" {
		argv = append(argv, "-S", m.opts.Socket)
	}
	if m.opts.Config != "" {
		argv = append(argv, "-f", m.opts.Config)
	}
	return append(argv, args...)
}

// run runs one tmux invocation; cmds are joined with ";" so they execute in
// order within the server, and a failure stops the rest.
func (m *Machine) run(ctx context.Context, cmds ...[]string) (executor.Result, error) {
	var args []string
	for i, c := range cmds {
		if i > 0 {
			args = append(args, ";")
		}
		args = append(args, c...)
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: m.tmux(args...)})
	if err != nil {
		return res, err
	}
	if res.ExitCode == 127 {
		return res, fmt.Errorf("tmux is not installed or not in PATH on %s", m.Machine())
	}
	return res, nil
}

// errNoServer tells apart "nothing is running" from real failures.
func noServer(stderr []byte) bool {
	s := string(stderr)
	// "no current target": a server that has no session (yet, or any more).
	return strings.Contains(s, "no server running") || strings.Contains(s, "error connecting to") ||
		strings.Contains(s, "can't find session") || strings.Contains(s, "no current target")
}

// Close closes the underlying host when it holds a connection.
func (m *Machine) Close() error {
	if c, ok := m.Host.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// RunTerminal runs cmd attached to the user's terminal on the machine, when
// the host can (local terminal, SSH PTY).
func (m *Machine) RunTerminal(ctx context.Context, cmd executor.Command, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	t, ok := m.Host.(executor.Terminal)
	if !ok {
		return -1, fmt.Errorf("machine %s cannot attach a terminal", m.Machine())
	}
	return t.RunTerminal(ctx, cmd, stdin, stdout, stderr)
}
