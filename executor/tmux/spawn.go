package tmux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/docker"
	"github.com/robotlauncher/launcher/executor/shell"
)

// containerExit goes before the command in a container's bash: a C-c that
// kills a command of a list or a loop makes the interactive bash there
// give up the whole command and end with 1, which docker exec passes on
// (a stop said "exit code 1", an operator's C-c in the pane made the
// process DEAD); the status of the job the C-c killed is 130, and is the
// exit code (the pane's own prologue does the same on the host).
const containerExit = `trap '__launcher_rc=$? __launcher_ps=${PIPESTATUS[*]}; [ "$__launcher_rc:$__launcher_ps" != 1:130 ] || exit 130' EXIT; `

// paneEnv returns the pane's argv and the variables of its run: the pane
// runs `bash -ic '. PROLOGUE ENVFILE'` (so .bashrc functions and aliases
// such as ros1 work), and the prologue exports the variables from ENVFILE and
// evals $LAUNCHER_CMD, the user's command, exactly once. For a container,
// the host's bash evals $LAUNCHER_RUN instead: a quoted `docker exec -it -e
// NAME… NAME bash -ic "$LAUNCHER_CMD"` (after containerExit), so the command reaches the
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
		// Everything but the script, quoted; the script is the variable,
		// after containerExit.
		run := shell.Join(argv[:len(argv)-1]) + " " + shell.Quote(containerExit) + `"$LAUNCHER_CMD"`
		vars = append(vars, executor.EnvVar{Name: "LAUNCHER_RUN", Value: run}, executor.EnvVar{Name: "LAUNCHER_CWD"})
	} else {
		vars = append(vars, executor.EnvVar{Name: "LAUNCHER_RUN"}, executor.EnvVar{Name: "LAUNCHER_CWD", Value: cwd})
	}
	if r := spec.Restart; r != nil {
		mode, clear := "on-failure", 0
		if r.Always {
			mode = "always"
		}
		if r.ClearReady {
			clear = 1
		}
		vars = append(vars, executor.EnvVar{Name: "LAUNCHER_RESTART", Value: fmt.Sprintf("%s %d %d %d %d %d",
			mode, r.Delay.Milliseconds(), r.MaxDelay.Milliseconds(), r.Max, r.Window.Milliseconds(), clear)})
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
// existing file) with the run's variables, on this computer (a remote
// spawn's is written by the tmux invocation that makes its window:
// writeFiles).
//
// It also checks the log the run appends to: a symbolic link, or a file of
// another user, is refused; a file others may write is made private first.
func (m *Machine) writeEnvFile(path, logPath string, vars []executor.EnvVar) error {
	fi, err := ownLocalLog(m.Machine(), logPath)
	if err != nil {
		return err
	}
	if fi != nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(logPath, 0o600); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("cannot write the env file of the run: %w", err)
	}
	_, err = f.Write(envFileText(vars))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A full disk: no half-written env file stays (a pane would read
		// it; the listing counts it as a run not yet begun).
		_ = os.Remove(path)
		return fmt.Errorf("cannot write the env file of the run: %w", err)
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

// spawnGrace is how long a spawn whose operation was cancelled may still
// take to finish its tmux invocation.
var spawnGrace = 10 * time.Second // a variable for the tests

// guard is the start of a new-window command list that fails ("already
// set") when session already holds a window named name, managed or
// foreign, alive or dead. tmux runs one client's command list without
// interleaving other clients' commands, so the check and the creation after
// it are atomic: two launchers starting the same process at the same moment
// get one window, and the loser looks again and finds it.
//
// The window is looked up by name as a target (`=SESSION:=NAME`), which
// tmux resolves in C; a format that visits every window (#{W:…}) cost
// 4.4 ms per spawn in a session of 1000 windows, a bring-up quadratic in
// its size. if-shell resolves a target that is not there to some other
// window (its flag CANFAIL), so the condition names both the session and
// the window. The listing a start looks at before it spawns finds a
// managed window by its @launcher_name mark; only a window renamed by hand
// in the instant between that listing and the spawn escapes this guard.
// Names with a dot (which a target reads as a pane) and tmux versions that
// refuse a missing target (full) get the format over all windows.
func guard(session, name string, full bool) [][]string {
	t := "=" + session + ":"
	target := t + "=" + name
	cond := "#{&&:#{==:#{session_name}," + session + "},#{==:#{window_name}," + name + "}}"
	if full || strings.Contains(name, ".") {
		target = t
		cond = "#{W:#{?#{||:#{==:#{@launcher_name}," + name + "},#{==:#{window_name}," + name + "}},1,}}"
	}
	return [][]string{
		{"set-option", "-u", "-t", t, "@launcher_guard"},
		{"if-shell", "-F", "-t", target, cond, "set-option -t " + t + " @launcher_guard 1"},
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
	if err := m.installWith(ctx, spec.Marks.Log[:strings.LastIndex(spec.Marks.Log, "/")]); err != nil {
		return executor.Window{}, err
	}
	envFile := m.scripts.runDir + "/" + spec.Marks.Tag + "-" + newToken()[4:12] + ".env"
	pane, vars := m.paneEnv(spec, envFile)
	var file *envWrite
	if executor.IsLocal(m.Host) {
		if err := m.writeEnvFile(envFile, spec.Marks.Log, vars); err != nil {
			return executor.Window{}, err
		}
	} else {
		// Written by the tmux invocation that makes the window: one round
		// trip on a remote link.
		file = &envWrite{path: envFile, log: spec.Marks.Log, text: envFileText(vars)}
	}
	// Once the env file is written the spawn is finished, whatever comes:
	// a Ctrl-C now would return before tmux answers while the window is
	// created anyway, and removing its env file then leaves a pane that
	// cannot read it (DEAD, exit 126). A cancelled spawn gets spawnGrace
	// to finish (only a hung tmux server takes that long).
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-time.After(spawnGrace):
				cancel()
			case <-actx.Done():
			}
		case <-actx.Done():
		}
	}()
	sctx := actx
	if file != nil {
		// A remote spawn's env file is written by its tmux invocation:
		// until that is under way, a Ctrl-C withdraws it and nothing is
		// made; once under way, the batch lets it finish.
		sctx = ctx
	}
	w, err := m.spawnWindow(sctx, spec, pane, file, envFile)
	var inFlight *inFlightError
	if err != nil && !errors.As(err, &inFlight) && (file == nil || file.written) {
		// The window was not made: nothing will read the env file. (One
		// whose tmux call was under way may still be made and read it.)
		m.removeEnvFile(envFile)
	}
	return w, err
}

func (m *Machine) spawnWindow(ctx context.Context, spec executor.SpawnSpec, pane []string, file *envWrite, envFile string) (executor.Window, error) {
	finish := func(target string) [][]string {
		cmds := markOptions(target, spec.Marks)
		if spec.Replace != "" {
			// A respawned window starts a new record of restarts.
			for _, o := range []string{"@launcher_restarts", "@launcher_restart_state"} {
				cmds = append(cmds, []string{"set-option", "-w", "-u", "-t", target, o})
			}
		}
		cmds = append(cmds,
			[]string{"pipe-pane", "-t", target},
			[]string{"pipe-pane", "-t", target, m.pipeCommand(spec.Marks.Log, spec.Marks.Tag, spec.Rotate, envFile)},
			doorbell,
			[]string{"display-message", "-p", "-t", target, "#{window_id}" + sep + "#{window_index}" + sep + "#{pane_pid}"})
		return cmds
	}

	if spec.Replace != "" {
		cmd := append([]string{"respawn-window", "-t", spec.Replace, "--"}, pane...)
		out, err := m.batchWith(ctx, append([][]string{cmd}, finish(spec.Replace)...), file)
		if te, ok := asTmuxError(err); errors.Is(err, errServerGone) || ok && te.stillActive() {
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
		lookup := !m.fullGuard.Load() // this attempt's guard looks the name up
		if create {
			cmds = [][]string{append([]string{"new-session", "-d", "-s", spec.Session, "-n", spec.Name, "-x", "200", "-y", "50", "--"}, pane...)}
		} else {
			cmds = append(guard(spec.Session, spec.Name, !lookup), append([]string{"new-window", "-d", "-t", target, "-n", spec.Name, "--"}, pane...))
		}
		out, err := m.batchWith(ctx, append(cmds, finish(target)...), file)
		if errors.Is(err, errServerGone) {
			if create {
				m.sessionCreated(spec.Session, -1)
			}
			// Whether it ran is unknown: the caller looks again.
			return executor.Window{}, executor.ErrRaced
		}
		te, _ := asTmuxError(err)
		if te != nil && !create && lookup && te.cantFindWindow() && attempt < 3 {
			// This tmux does not let if-shell's target fail: the guard
			// that visits every window, from now on (concurrent spawns
			// that used the lookup try again too).
			m.fullGuard.Store(true)
			continue
		}
		if te != nil && te.guardTaken() {
			// Another client created the window first.
			return executor.Window{}, executor.ErrRaced
		}
		if te != nil && (te.raced() || te.gone()) {
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
			if err := m.waitUnlocked(ctx, st.creating); err != nil {
				return "", false, err
			}
			continue
		}
		if st == nil && m.learned && !relist {
			// The last listing did not have it: create it. Should another
			// client have made it since, new-session says so and the
			// spawn looks again (a listing of its own here would cost a
			// round trip on every first spawn).
			st = &sessionState{exists: false}
			m.sessions[spec.Session] = st
			continue
		}
		if st == nil && m.listing != nil && !relist {
			// Another spawn is listing the server: its answer serves this
			// one too (twenty spawns into a new session list once).
			if err := m.waitUnlocked(ctx, m.listing); err != nil {
				return "", false, err
			}
			if m.sessions[spec.Session] == nil {
				relist = true // that listing failed: take one
			}
			continue
		}
		if st == nil || relist {
			ch := make(chan struct{})
			m.listing = ch
			m.spawnMu.Unlock()
			snap, err := m.Snapshot(ctx)
			m.spawnMu.Lock()
			if m.listing == ch {
				m.listing = nil
			}
			close(ch)
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

// waitUnlocked waits for ch to close (or ctx to end) with spawnMu, which
// the caller holds, released meanwhile.
func (m *Machine) waitUnlocked(ctx context.Context, ch <-chan struct{}) error {
	m.spawnMu.Unlock()
	defer m.spawnMu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
	m.learned = true
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
