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
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/docker"
	"github.com/robotlauncher/launcher/executor/shell"
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
	//go:embed scripts/signal.sh
	signalScript string
	//go:embed scripts/signal_container.sh
	containerSignalScript string
)

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
	batcher  batcher

	scripts   scripts
	resolveMu sync.Mutex
	resolved  bool
	dirMu     sync.Mutex
	dirs      map[string]bool // log directories known to exist
}

var (
	_ executor.Machine  = (*Machine)(nil)
	_ executor.Terminal = (*Machine)(nil)
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
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c",
		`printf '%s\n%s\n' "${LAUNCHER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/launcher}" "$HOME"`}})
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
	if res.ExitCode != 0 || len(lines) != 2 {
		return fmt.Errorf("cannot resolve the state directory on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	if m.opts.StateDir == "" {
		m.opts.StateDir = lines[0]
	}
	if m.home == "" {
		m.home = lines[1]
	}
	m.setLogDir()
	m.resolved = true
	return nil
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

// Field order of a listing row. Values are separated by \x1f, which tmux
// prints verbatim and names do not contain in practice; rows that do not
// parse are skipped, so a strange foreign window can never be misread.
var listFields = []string{
	"session_name", "window_id", "window_index", "window_name", "pane_pid", "pane_dead",
	"pane_dead_status", "pane_dead_signal", "@launcher", "@launcher_op", "@launcher_hash",
	"@launcher_ready", "@launcher_started", "@launcher_tag", "@launcher_docker", "@launcher_log",
	"@launcher_oneshot", "pid", "@launcher_name",
}

const sep = "\x1f"

func listFormat() string {
	parts := make([]string, 0, len(listFields)+1)
	for _, f := range listFields {
		parts = append(parts, "#{"+f+"}")
	}
	parts = append(parts, "end")
	return strings.Join(parts, sep)
}

// Snapshot lists every window of the server with one list-windows -a.
func (m *Machine) Snapshot(ctx context.Context) (executor.Snapshot, error) {
	snap := executor.Snapshot{Taken: time.Now()}
	var res executor.Result
	var err error
	for attempt := 0; ; attempt++ {
		res, err = m.run(ctx, []string{"list-windows", "-a", "-F", listFormat()})
		if err != nil {
			return snap, err
		}
		// A server still shutting down after kill-server, or one that just
		// lost its last session: ask again.
		if res.ExitCode == 0 || !serverGone(string(res.Stderr)) || attempt >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.ExitCode != 0 {
		if noServer(res.Stderr) {
			return snap, nil
		}
		return snap, fmt.Errorf("tmux list-windows on %s failed: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	snap.Windows = ParseWindows(res.Stdout)
	for _, w := range snap.Windows {
		// tmux fills in the exit status of a pane when it reaps the process,
		// a moment after the pane died. Debian's tmux (built with
		// libutempter) can miss the SIGCHLD altogether and keep the zombie
		// forever (tmux#311, #4559): a SIGCHLD of our own makes it reap.
		if n, _ := ctx.Value(retryKey{}).(int); w.Marks.Managed && w.Dead && !w.ExitKnown && n < 5 {
			if n >= 1 && w.ServerPID > 0 {
				_, _ = m.Host.Run(ctx, executor.Command{Args: []string{"kill", "-s", "CHLD", strconv.Itoa(w.ServerPID)}})
			}
			time.Sleep(20 * time.Millisecond)
			return m.Snapshot(context.WithValue(ctx, retryKey{}, n+1))
		}
	}
	m.spawnMu.Lock()
	m.learn(snap)
	m.spawnMu.Unlock()
	return snap, nil
}

type retryKey struct{}

// ParseWindows parses list-windows output in listFormat. Malformed rows are
// dropped.
func ParseWindows(out []byte) []executor.Window {
	var ws []executor.Window
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Split(string(line), sep)
		if len(f) != len(listFields)+1 || f[len(f)-1] != "end" {
			continue
		}
		w := executor.Window{Session: f[0], ID: f[1], Name: f[3]}
		var err error
		if w.Index, err = strconv.Atoi(f[2]); err != nil {
			continue
		}
		if w.PanePID, err = strconv.Atoi(f[4]); err != nil {
			continue
		}
		w.Dead = f[5] == "1"
		if w.Dead {
			if n, err := strconv.Atoi(f[6]); err == nil {
				w.ExitCode, w.ExitKnown = n, true
			} else if n, err := strconv.Atoi(f[7]); err == nil && n > 0 {
				w.ExitCode, w.ExitKnown = 128+n, true
			}
		}
		w.Marks = executor.Marks{
			Managed: f[8] == "1",
			Op:      f[9],
			Hash:    f[10],
			Ready:   f[11] == "1",
			Tag:     f[13],
			Docker:  f[14],
			Log:     f[15],
			OneShot: f[16] == "1",
		}
		w.Marks.Started, _ = strconv.ParseInt(f[12], 10, 64)
		w.ServerPID, _ = strconv.Atoi(f[17])
		w.Marks.Name = f[18]
		ws = append(ws, w)
	}
	return ws
}

// LogPath returns <log dir>/<session>/<name>.log on this machine.
func (m *Machine) LogPath(ctx context.Context, session, name string) (string, error) {
	if err := m.resolve(ctx); err != nil {
		return "", err
	}
	return strings.TrimRight(m.logDir, "/") + "/" + session + "/" + name + ".log", nil
}

// markOptions turns marks into "set-option" commands for target.
func markOptions(target string, mk executor.Marks) [][]string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	kv := [][2]string{
		{"@launcher", "1"},
		{"@launcher_op", mk.Op},
		{"@launcher_hash", mk.Hash},
		{"@launcher_ready", b(mk.Ready)},
		{"@launcher_started", strconv.FormatInt(mk.Started, 10)},
		{"@launcher_tag", mk.Tag},
		{"@launcher_docker", mk.Docker},
		{"@launcher_log", mk.Log},
		{"@launcher_oneshot", b(mk.OneShot)},
		{"@launcher_name", mk.Name},
	}
	// A title escape (ESC k … ESC \) or tmux's automatic renaming must not
	// change the window's name under an operator's eyes; launcher itself
	// finds the window by @launcher_name either way.
	cmds := [][]string{
		{"set-option", "-w", "-t", target, "remain-on-exit", "on"},
		{"set-option", "-w", "-t", target, "allow-rename", "off"},
		{"set-option", "-w", "-t", target, "automatic-rename", "off"},
	}
	for _, p := range kv {
		cmds = append(cmds, []string{"set-option", "-w", "-t", target, p[0], p[1]})
	}
	return cmds
}

// pipeCommand is the shell command tmux runs (with /bin/sh -c, on the
// machine) to write the pane's output to the log. tmux expands formats and
// strftime sequences in it, so it is escaped for that too. A symbolic link
// planted where the log goes is refused (the log directory is checked to be
// the caller's; this closes the remaining gap).
func (m *Machine) pipeCommand(logPath string) string {
	q := shell.Quote
	var sh string
	if m.scripts.writer == "perl" {
		sh = "exec perl " + q(m.scripts.path(perlWriter, "logwriter.pl")) + " >>" + q(logPath)
	} else {
		sh = "exec bash " + q(m.scripts.path(bashWriter, "logwriter.bash")) + " >>" + q(logPath)
	}
	return escapeFormat("umask 077; [ -L " + q(logPath) + " ] && exit 1; " + sh)
}

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
// (once per Machine) and finds out whether Perl with Time::HiRes is there
// (fast writer, millisecond timestamps) or the bash writer must do.
func (m *Machine) install(ctx context.Context) error {
	s := &m.scripts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	state := strings.TrimRight(m.opts.StateDir, "/")
	s.dir, s.runDir = state+"/bin", state+"/run"
	args := []string{"sh", "-c", prepareScript, "sh", "install", state}
	for _, f := range helpers {
		p := s.path(f.content, f.name)
		args = append(args, p[strings.LastIndex(p, "/")+1:], f.content)
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: args})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return m.prepareErr("launcher's state directory "+state, res)
	}
	s.writer = strings.TrimSpace(string(res.Stdout))
	s.done = true
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
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", prepareScript, "sh", "dir", dir}})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return m.prepareErr("the log directory "+dir, res)
	}
	m.dirs[dir] = true
	return nil
}

// escapeFormat protects text from tmux format and strftime expansion.
func escapeFormat(s string) string {
	return strings.NewReplacer("#", "##", "%", "%%").Replace(s)
}

// paneEnv returns the pane's argv and the variables of its run: the pane
// runs `bash -ic '. PROLOGUE ENVFILE'` (so .bashrc functions and aliases
// such as ros1 work), and the prologue exports the variables from ENVFILE and
// evals $LAUNCHER_CMD, the user's command, exactly once. For a container,
// the host's bash evals $LAUNCHER_RUN instead: a quoted `docker exec -it -e
// NAME… NAME bash -ic "$LAUNCHER_CMD"`, so the command reaches the
// container's bash as one argument, byte for byte, and values reach docker
// through its environment, never its command line.
func (m *Machine) paneEnv(spec executor.SpawnSpec, envFile string) ([]string, []executor.EnvVar) {
	vars := []executor.EnvVar{
		{Name: "LAUNCHER_TAG", Value: spec.Marks.Tag},
		{Name: "LAUNCHER_PROCESS", Value: spec.Name},
		{Name: "LAUNCHER_SESSION", Value: spec.Session},
		{Name: "LAUNCHER_LOG", Value: spec.Marks.Log},
		{Name: "LAUNCHER_CMD", Value: spec.Script},
		{Name: "PYTHONUNBUFFERED", Value: "1"},
	}
	cwd := m.expandHome(spec.Cwd)
	if spec.Docker != "" {
		argv := docker.ExecArgv(spec.Docker, docker.ExecOptions{
			TTY: true, Env: append([]executor.EnvVar{{Name: "LAUNCHER_TAG"}}, spec.Env...),
			Cwd: cwd, Script: "",
		})
		// Everything but the script, quoted; the script is the variable.
		run := shell.Join(argv[:len(argv)-1]) + ` "$LAUNCHER_CMD"`
		vars = append(vars, executor.EnvVar{Name: "LAUNCHER_RUN", Value: run}, executor.EnvVar{Name: "LAUNCHER_CWD"})
	} else {
		vars = append(vars, executor.EnvVar{Name: "LAUNCHER_RUN"}, executor.EnvVar{Name: "LAUNCHER_CWD", Value: cwd})
	}
	vars = append(vars, spec.Env...)
	q := shell.Quote
	return []string{"bash", "-ic", ". " + q(m.scripts.path(prologue, "prologue.bash")) + " " + q(envFile)}, vars
}

// envFileText is the env file of one run: `export NAME='value'` lines.
func envFileText(vars []executor.EnvVar) []byte {
	var b strings.Builder
	for _, v := range vars {
		b.WriteString("export " + v.Name + "=" + shell.Quote(v.Value) + "\n")
	}
	return []byte(b.String())
}

// writeEnvFile creates path (0600, never following or replacing an
// existing file) with the run's variables, on the machine.
//
// It also checks the log the run appends to: a symbolic link, or a file of
// another user, is refused; a file others may write is made private first.
func (m *Machine) writeEnvFile(ctx context.Context, path, logPath string, vars []executor.EnvVar) error {
	text := envFileText(vars)
	if executor.IsLocal(m.Host) {
		if fi, err := os.Lstat(logPath); err == nil {
			st, _ := fi.Sys().(*syscall.Stat_t)
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				return &UnsafePathError{Machine: m.Machine(), Msg: "refusing to use " + logPath + ": it is a symbolic link (remove it)"}
			case st != nil && int(st.Uid) != os.Getuid():
				return &UnsafePathError{Machine: m.Machine(), Msg: fmt.Sprintf("refusing to use %s: it is owned by uid %d, not by you", logPath, st.Uid)}
			case fi.Mode().Perm()&0o077 != 0:
				if err := os.Chmod(logPath, 0o600); err != nil {
					return err
				}
			}
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("cannot write the env file of the run: %w", err)
		}
		_, err = f.Write(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", `umask 077; f=$2
if [ -L "$f" ]; then echo "refusing to use $f: it is a symbolic link (remove it)" >&2; exit 3; fi
if [ -e "$f" ]; then
  [ -O "$f" ] || { echo "refusing to use $f: it is owned by another user" >&2; exit 3; }
  chmod go-rwx "$f" || exit 1
fi
set -C; cat > "$1"`, "sh", path, logPath}, Stdin: text})
	if err != nil {
		return err
	}
	if res.ExitCode == 3 {
		return &UnsafePathError{Machine: m.Machine(), Msg: strings.TrimSpace(string(res.Stderr))}
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("cannot write %s on %s: %s", path, m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// removeEnvFile removes the env file of a spawn that did not start.
func (m *Machine) removeEnvFile(path string) {
	if executor.IsLocal(m.Host) {
		_ = os.Remove(path)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = m.Host.Run(ctx, executor.Command{Args: []string{"rm", "-f", "--", path}})
}

// guard is the start of a new-window command list that fails ("already
// set") when session already holds a window for name, managed or foreign,
// alive or dead. tmux runs one client's command list without interleaving
// other clients' commands, so the check and the creation after it are
// atomic: two launchers starting the same process at the same moment get
// one window, and the loser looks again and finds it.
func guard(session, name string) [][]string {
	t := "=" + session + ":"
	cond := "#{W:#{?#{||:#{==:#{@launcher_name}," + name + "},#{==:#{window_name}," + name + "}},1,}}"
	return [][]string{
		{"set-option", "-u", "-t", t, "@launcher_guard"},
		{"if-shell", "-F", "-t", t, cond, "set-option -t " + t + " @launcher_guard 1"},
		{"set-option", "-o", "-t", t, "@launcher_guard", "1"},
		{"set-option", "-u", "-t", t, "@launcher_guard"},
	}
}

// Spawn creates (or respawns) the window for spec in one tmux invocation:
// window, remain-on-exit, marks and the log pipe are in place before the
// server reads the first byte of output.
func (m *Machine) Spawn(ctx context.Context, spec executor.SpawnSpec) (executor.Window, error) {
	if err := m.resolve(ctx); err != nil {
		return executor.Window{}, err
	}
	if spec.Marks.Log == "" {
		spec.Marks.Log, _ = m.LogPath(ctx, spec.Session, spec.Name)
	}
	if spec.Marks.Tag == "" {
		spec.Marks.Tag = newToken()[4:]
	}
	// The container is recorded on the window: stops must reach into it
	// even after the config changed.
	spec.Marks.Docker = spec.Docker
	spec.Marks.Name = spec.Name
	if err := m.install(ctx); err != nil {
		return executor.Window{}, err
	}
	if err := m.ensureDir(ctx, spec.Marks.Log[:strings.LastIndex(spec.Marks.Log, "/")]); err != nil {
		return executor.Window{}, err
	}
	envFile := m.scripts.runDir + "/" + spec.Marks.Tag + "-" + newToken()[4:12] + ".env"
	pane, vars := m.paneEnv(spec, envFile)
	if err := m.writeEnvFile(ctx, envFile, spec.Marks.Log, vars); err != nil {
		return executor.Window{}, err
	}
	w, err := m.spawnWindow(ctx, spec, pane)
	if err != nil {
		m.removeEnvFile(envFile)
	}
	return w, err
}

func (m *Machine) spawnWindow(ctx context.Context, spec executor.SpawnSpec, pane []string) (executor.Window, error) {
	finish := func(target string) [][]string {
		cmds := markOptions(target, spec.Marks)
		cmds = append(cmds,
			[]string{"pipe-pane", "-t", target},
			[]string{"pipe-pane", "-t", target, m.pipeCommand(spec.Marks.Log)},
			[]string{"display-message", "-p", "-t", target, "#{window_id}" + sep + "#{window_index}" + sep + "#{pane_pid}"})
		return cmds
	}

	if spec.Replace != "" {
		cmd := append([]string{"respawn-window", "-t", spec.Replace, "--"}, pane...)
		out, err := m.batch(ctx, append([][]string{cmd}, finish(spec.Replace)...))
		if err != nil && (err == errServerGone || strings.Contains(err.Error(), "still active")) {
			return executor.Window{}, executor.ErrRaced
		}
		return m.spawned(spec, out, err)
	}

	for attempt := 0; ; attempt++ {
		target, create, err := m.allocate(ctx, spec, attempt > 0)
		if err != nil {
			return executor.Window{}, err
		}
		var cmds [][]string
		if create {
			cmds = [][]string{append([]string{"new-session", "-d", "-s", spec.Session, "-n", spec.Name, "-x", "200", "-y", "50", "--"}, pane...)}
		} else {
			cmds = append(guard(spec.Session, spec.Name), append([]string{"new-window", "-d", "-t", target, "-n", spec.Name, "--"}, pane...))
		}
		out, err := m.batch(ctx, append(cmds, finish(target)...))
		if err == errServerGone {
			if create {
				m.sessionCreated(spec.Session, -1)
			}
			// Whether it ran is unknown: the caller looks again.
			return executor.Window{}, executor.ErrRaced
		}
		if err != nil && strings.Contains(err.Error(), "already set: @launcher_guard") {
			// Another client created the window first.
			return executor.Window{}, executor.ErrRaced
		}
		if err != nil && (raced(err.Error()) || gone(err.Error())) {
			if create {
				m.sessionCreated(spec.Session, -1)
			}
			if attempt < 3 {
				continue // another client took the index or created the session
			}
			return executor.Window{}, executor.ErrRaced
		}
		w, err := m.spawned(spec, out, err)
		if create {
			idx := -1
			if err == nil {
				idx = w.Index
			}
			m.sessionCreated(spec.Session, idx)
		}
		return w, err
	}
}

// allocate picks where a new window goes: a new session, or the next free
// index of an existing one. Indexes are handed out here so that concurrent
// spawns in one launcher never collide; a fresh listing is taken when the
// session is unknown or after a collision with another client. Creating a
// session is exclusive: other spawns in it wait until it exists.
func (m *Machine) allocate(ctx context.Context, spec executor.SpawnSpec, relist bool) (target string, create bool, err error) {
	m.spawnMu.Lock()
	defer m.spawnMu.Unlock()
	for {
		st := m.sessions[spec.Session]
		if st != nil && st.creating != nil {
			ch := st.creating
			m.spawnMu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				m.spawnMu.Lock()
				return "", false, ctx.Err()
			}
			m.spawnMu.Lock()
			continue
		}
		if st == nil || relist {
			m.spawnMu.Unlock()
			snap, err := m.Snapshot(ctx)
			m.spawnMu.Lock()
			if err != nil {
				return "", false, err
			}
			m.learn(snap)
			relist = false
			if m.sessions[spec.Session] == nil {
				m.sessions[spec.Session] = &sessionState{exists: false}
			}
			continue
		}
		if !st.exists {
			st.creating = make(chan struct{})
			return "=" + spec.Session + ":", true, nil
		}
		idx := st.next
		st.next++
		return "=" + spec.Session + ":" + strconv.Itoa(idx), false, nil
	}
}

// sessionState is what a Machine knows of one session between listings.
type sessionState struct {
	exists   bool
	next     int           // next free window index
	creating chan struct{} // closed when a pending new-session finished
}

// learn updates the known sessions and free indexes from a listing.
func (m *Machine) learn(snap executor.Snapshot) {
	seen := map[string]int{}
	for _, w := range snap.Windows {
		if n, ok := seen[w.Session]; !ok || w.Index+1 > n {
			seen[w.Session] = w.Index + 1
		}
	}
	for name, st := range m.sessions {
		if st.creating != nil {
			continue
		}
		if n, ok := seen[name]; ok {
			st.exists = true
			if n > st.next {
				st.next = n
			}
		} else {
			st.exists, st.next = false, 0
		}
	}
	for name, n := range seen {
		if m.sessions[name] == nil {
			m.sessions[name] = &sessionState{exists: true, next: n}
		}
	}
}

// sessionCreated ends a pending session creation; firstIndex is the index
// of its first window (which depends on the user's base-index), or -1 when
// the creation failed and the next spawn must look again.
func (m *Machine) sessionCreated(session string, firstIndex int) {
	m.spawnMu.Lock()
	defer m.spawnMu.Unlock()
	st := m.sessions[session]
	if st == nil || st.creating == nil {
		return
	}
	close(st.creating)
	st.creating = nil
	if firstIndex >= 0 {
		st.exists, st.next = true, firstIndex+1
	} else {
		delete(m.sessions, session)
	}
}

// gone reports that the session (or the whole server) went away since it
// was listed: its last window closed (a one-shot that succeeded), or a user
// killed it. The spawn looks again and creates it.
func gone(s string) bool {
	return strings.Contains(s, "can't find session") || strings.Contains(s, "no such session") ||
		strings.Contains(s, "no server running") || strings.Contains(s, "error connecting to")
}

func raced(s string) bool {
	return strings.Contains(s, "index") && strings.Contains(s, "in use") || strings.Contains(s, "duplicate session")
}

func (m *Machine) spawned(spec executor.SpawnSpec, out []string, err error) (executor.Window, error) {
	if err != nil {
		return executor.Window{}, fmt.Errorf("tmux could not start %s on %s: %w", spec.Name, m.Machine(), err)
	}
	if len(out) == 0 {
		return executor.Window{}, fmt.Errorf("tmux gave no answer when starting %s on %s", spec.Name, m.Machine())
	}
	f := strings.Split(out[len(out)-1], sep)
	if len(f) != 3 {
		return executor.Window{}, fmt.Errorf("tmux gave an unexpected answer for %s: %q", spec.Name, out)
	}
	w := executor.Window{Session: spec.Session, ID: f[0], Name: spec.Name, Marks: spec.Marks}
	w.Marks.Managed = true
	w.Index, _ = strconv.Atoi(f[1])
	w.PanePID, _ = strconv.Atoi(f[2])
	return w, nil
}

// SetMarks writes and removes window user options in one invocation.
func (m *Machine) SetMarks(ctx context.Context, windowID string, set map[string]string, unset []string) error {
	cmds := setCommands(windowID, set)
	for _, k := range unset {
		cmds = append(cmds, []string{"set-option", "-w", "-u", "-t", windowID, optionName(k)})
	}
	if len(cmds) == 0 {
		return nil
	}
	_, err := m.batch(ctx, cmds)
	if err == errServerGone {
		_, err = m.batch(ctx, cmds) // setting options twice is harmless
	}
	return err
}

func setCommands(windowID string, set map[string]string) [][]string {
	var cmds [][]string
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmds = append(cmds, []string{"set-option", "-w", "-t", windowID, optionName(k), set[k]})
	}
	return cmds
}

func optionName(k string) string {
	if k == "" {
		return "@launcher"
	}
	return "@launcher_" + k
}

// Signal delivers sig to the process in w. SIGINT and SIGQUIT are sent as the
// keys C-c and C-\ into the pane (through `docker exec -it` they reach the
// container's terminal too); SIGTERM and SIGKILL go to the processes of the
// run inside the container first, then to every process of the pane's
// session (the pane's interactive bash included).
func (m *Machine) Signal(ctx context.Context, w executor.Window, sig executor.Signal, set map[string]string) error {
	switch sig {
	case executor.SIGINT, executor.SIGQUIT:
		key := "C-c"
		if sig == executor.SIGQUIT {
			key = `C-\`
		}
		cmds := append(setCommands(w.ID, set), []string{"send-keys", "-t", w.ID, key})
		_, err := m.batch(ctx, cmds)
		return err
	case executor.SIGTERM, executor.SIGKILL:
		if err := m.SetMarks(ctx, w.ID, set, nil); err != nil {
			return err
		}
		if w.Marks.Docker != "" && w.Marks.Tag != "" {
			_, err := m.Host.Run(ctx, executor.Command{Args: []string{"docker", "exec", w.Marks.Docker,
				"sh", "-c", containerSignalScript, "sh", string(sig), w.Marks.Tag}})
			if err != nil {
				return err
			}
			if sig == executor.SIGTERM {
				// docker exec does not forward signals: killing its client
				// would orphan the process in the container. The client ends
				// when the process does; only SIGKILL also takes the host side.
				return nil
			}
		}
		// The pane's own shell is included: it may be what runs the loop.
		res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", signalScript, "sh",
			string(sig), strconv.Itoa(w.PanePID), "0", w.Marks.Tag}})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("signal %s on %s: %s", sig, m.Machine(), strings.TrimSpace(string(res.Stderr)))
		}
		return nil
	}
	return fmt.Errorf("unknown signal %q", sig)
}

// CloseWindow kills a window by ID.
func (m *Machine) CloseWindow(ctx context.Context, windowID string) error {
	res, err := m.run(ctx, []string{"kill-window", "-t", windowID})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 && !noServer(res.Stderr) {
		return fmt.Errorf("tmux kill-window on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// Exec runs a short command: `bash -c` on the host, or `docker exec -i …
// bash -ic` in a container, bounded on the machine by coreutils timeout so a
// hung check cannot outlive its deadline even over SSH.
func (m *Machine) Exec(ctx context.Context, spec executor.ExecSpec) (executor.Result, error) {
	var argv []string
	if spec.Timeout > 0 && !executor.IsLocal(m.Host) {
		// Locally the context kills the process group; over SSH closing the
		// channel does not stop the remote command, so it bounds itself.
		secs := spec.Timeout.Seconds()
		argv = append(argv, "timeout", "-k", "2", strconv.FormatFloat(secs, 'f', 3, 64))
	}
	if spec.Timeout > 0 {
		limit := spec.Timeout
		if !executor.IsLocal(m.Host) {
			limit += 3 * time.Second // the remote timeout fires first
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	if strings.HasPrefix(spec.Cwd, "~") {
		if err := m.resolve(ctx); err != nil {
			return executor.Result{}, err
		}
	}
	cwd := m.expandHome(spec.Cwd)
	cmd := executor.Command{}
	if spec.Docker != "" {
		argv = append(argv, docker.ExecArgv(spec.Docker, docker.ExecOptions{Env: spec.Env, Cwd: cwd, Script: spec.Script})...)
		cmd.Env = spec.Env
	} else {
		argv = append(argv, "bash", "-c", spec.Script)
		cmd.Env, cmd.Dir = spec.Env, cwd
	}
	cmd.Args = argv
	res, err := m.Host.Run(ctx, cmd)
	if err != nil && spec.Timeout > 0 && ctx.Err() == context.DeadlineExceeded {
		return executor.Result{ExitCode: 124, Stderr: []byte("timed out")}, nil
	}
	return res, err
}

// CheckContainer fails unless the container exists and runs on this machine.
func (m *Machine) CheckContainer(ctx context.Context, name string) error {
	return docker.Check(ctx, m.Host, name)
}

// Processes reads the process table with ps (procps or busybox).
func (m *Machine) Processes(ctx context.Context) ([]executor.ProcessInfo, error) {
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"ps", "-e", "-o", "pid=,ppid=,rss=,pcpu=,args="}})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("ps on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return ParsePS(res.Stdout), nil
}

// ParsePS parses `ps -o pid=,ppid=,rss=,pcpu=,args=` output.
func ParsePS(out []byte) []executor.ProcessInfo {
	var ps []executor.ProcessInfo
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		ppid, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		rss, _ := strconv.ParseInt(f[2], 10, 64)
		cpu, _ := strconv.ParseFloat(f[3], 64)
		args := strings.Join(f[4:], " ")
		ps = append(ps, executor.ProcessInfo{PID: pid, PPID: ppid, RSSKiB: rss, CPU: cpu, Args: args})
	}
	return ps
}

// AttachCommand returns the argv that shows one window in a terminal. It
// opens a grouped view session (sharing the windows of session, with its own
// current window) that tmux destroys when the terminal detaches, so several
// viewers never fight over the session's current window.
func (m *Machine) AttachCommand(session, windowID, view string) []string {
	argv := []string{"env", "-u", "TMUX"}
	argv = append(argv, m.tmux("new-session", "-t", "="+session+":", "-s", view, ";",
		"set-option", "-t", "="+view+":", "destroy-unattached", "on", ";",
		"set-option", "-t", "="+view+":", "@launcher_view", "1", ";",
		"select-window", "-t", windowID)...)
	return argv
}

// Close closes the underlying host when it holds a connection.
func (m *Machine) Close() error {
	if c, ok := m.Host.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// MonitorPane is one pane of a monitor session.
type MonitorPane struct {
	Title string
	Argv  []string
}

// PanesPerWindow bounds the panes of one monitor window (a 3×2 grid).
const PanesPerWindow = 6

// BuildMonitor (re)creates session name with one pane per entry, tiled, at
// most PanesPerWindow per window, each titled. A previous monitor session
// of that name built for the same owner (the config file) is replaced; any
// other session of that name is never touched: BuildMonitor refuses.
func (m *Machine) BuildMonitor(ctx context.Context, name, owner string, panes []MonitorPane) error {
	if len(panes) == 0 {
		return fmt.Errorf("nothing to monitor")
	}
	res, err := m.run(ctx, []string{"show-options", "-v", "-t", "=" + name + ":", "@launcher_mon"})
	if err != nil {
		return err
	}
	switch cur := strings.TrimSpace(string(res.Stdout)); {
	case res.ExitCode != 0 && (noServer(res.Stderr) || strings.Contains(string(res.Stderr), "no such session")):
		// No such session: nothing to replace.
	case res.ExitCode == 0 && cur == owner:
		if res, err := m.run(ctx, []string{"kill-session", "-t", "=" + name + ":"}); err != nil || res.ExitCode != 0 {
			return fmt.Errorf("cannot replace the monitor session %s: %v %s", name, err, strings.TrimSpace(string(res.Stderr)))
		}
	case res.ExitCode == 0 && cur != "":
		return fmt.Errorf("tmux session %s is the monitor of another config (%s): close it, or run mon with that config", name, cur)
	default:
		return fmt.Errorf("tmux session %s exists and was not created by launcher mon: rename or close it (launcher never destroys what it does not own)", name)
	}
	var cmds [][]string
	for i, p := range panes {
		win := fmt.Sprintf("mon%d", i/PanesPerWindow+1)
		target := "=" + name + ":=" + win
		switch {
		case i == 0:
			cmds = append(cmds,
				append([]string{"new-session", "-d", "-s", name, "-n", win, "-x", "200", "-y", "50", "--"}, p.Argv...),
				// A pane that fails keeps its message on screen.
				[]string{"set-option", "-w", "-t", target, "remain-on-exit", "on"},
				[]string{"set-option", "-t", "=" + name + ":", "status-style", "bg=magenta"},
				[]string{"set-option", "-t", "=" + name + ":", "mouse", "on"},
				[]string{"set-option", "-t", "=" + name + ":", "@launcher_view", "1"},
				[]string{"set-option", "-t", "=" + name + ":", "@launcher_mon", owner},
				[]string{"set-option", "-w", "-t", target, "pane-border-status", "top"})
		case i%PanesPerWindow == 0:
			cmds = append(cmds,
				append([]string{"new-window", "-d", "-t", "=" + name + ":", "-n", win, "--"}, p.Argv...),
				[]string{"set-option", "-w", "-t", target, "remain-on-exit", "on"},
				[]string{"set-option", "-w", "-t", target, "pane-border-status", "top"})
		default:
			cmds = append(cmds,
				append([]string{"split-window", "-t", target, "--"}, p.Argv...),
				[]string{"select-layout", "-t", target, "tiled"})
		}
		cmds = append(cmds, []string{"select-pane", "-t", target, "-T", p.Title})
	}
	res, err = m.run(ctx, cmds...)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("tmux could not build the monitor session %s: %s", name, strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// AttachArgv is the argv that attaches the terminal to session name.
func (m *Machine) AttachArgv(name string) []string {
	return append([]string{"env", "-u", "TMUX"}, m.tmux("attach-session", "-t", "="+name)...)
}

// logHeadScript prints the size of $1 (0 when missing) and then, when
// $2 > 0, the last $2 lines before that size.
const logHeadScript = `f=$1 n=$2
if [ -f "$f" ]; then s=$(wc -c < "$f"); else s=0; fi
echo $s
if [ "$n" -gt 0 ] && [ "$s" -gt 0 ]; then head -c "$s" -- "$f" | tail -n "$n"; fi`

// LogHead returns the size of a log and its last n lines before that size.
func (m *Machine) LogHead(ctx context.Context, path string, n int) (int64, []string, error) {
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", logHeadScript, "sh", path, strconv.Itoa(n)}})
	if err != nil {
		return 0, nil, err
	}
	if res.ExitCode != 0 {
		return 0, nil, fmt.Errorf("reading %s on %s: %s", path, m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	first, rest, _ := strings.Cut(string(res.Stdout), "\n")
	size, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("reading %s on %s: unexpected answer %q", path, m.Machine(), first)
	}
	var lines []string
	if rest != "" {
		lines = strings.Split(strings.TrimSuffix(rest, "\n"), "\n")
	}
	return size, lines, nil
}

// FollowLog streams a log from a byte offset with `tail -F` on the machine
// (inotify there, so new lines arrive at once).
func (m *Machine) FollowLog(ctx context.Context, path string, offset int64) (executor.Stream, error) {
	return m.Host.Stream(ctx, executor.Command{Args: []string{"tail", "-c", "+" + strconv.FormatInt(offset+1, 10), "-F", "--", path}})
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

// taggedScript prints, NUL-separated, "/proc/PID/environ:VAR=value" for
// the launcher variables of every process that has them (one grep finds the
// processes, one reads their variables).
const taggedScript = `files=$(grep -lzF LAUNCHER_TAG= /proc/[0-9]*/environ 2>/dev/null)
[ -n "$files" ] || exit 0
grep -azH -E '^LAUNCHER_(TAG|PROCESS|SESSION|LOG)=' $files 2>/dev/null
exit 0`

// Tagged lists the processes of the machine that carry launcher's run
// variables (the pane's shell and everything it started, unless a
// process cleared its environment).
func (m *Machine) Tagged(ctx context.Context) ([]executor.TaggedProcess, error) {
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", taggedScript}})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("listing launcher's processes on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return ParseTagged(res.Stdout), nil
}

// ParseTagged parses taggedScript's output.
func ParseTagged(out []byte) []executor.TaggedProcess {
	byPID := map[int]*executor.TaggedProcess{}
	var order []int
	for _, rec := range strings.Split(string(out), "\x00") {
		path, kv, ok := strings.Cut(rec, ":")
		if !ok || !strings.HasPrefix(path, "/proc/") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path, "/proc/"), "/environ"))
		if err != nil {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		tp := byPID[pid]
		if tp == nil {
			tp = &executor.TaggedProcess{PID: pid}
			byPID[pid] = tp
			order = append(order, pid)
		}
		switch k {
		case "LAUNCHER_TAG":
			tp.Tag = v
		case "LAUNCHER_PROCESS":
			tp.Process = v
		case "LAUNCHER_SESSION":
			tp.Session = v
		case "LAUNCHER_LOG":
			tp.Log = v
		}
	}
	var ps []executor.TaggedProcess
	for _, pid := range order {
		if tp := byPID[pid]; tp.Tag != "" {
			ps = append(ps, *tp)
		}
	}
	return ps
}

// SignalTagged signals every process of the given runs on the machine.
func (m *Machine) SignalTagged(ctx context.Context, tags []string, sig executor.Signal) error {
	for _, tag := range tags {
		if tag == "" {
			continue
		}
		res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", signalScript, "sh", string(sig), "-", "0", tag}})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("signal %s on %s: %s", sig, m.Machine(), strings.TrimSpace(string(res.Stderr)))
		}
	}
	return nil
}
