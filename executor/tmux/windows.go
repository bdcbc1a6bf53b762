package tmux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Field order of a listing row. Values are separated by \x1f, which tmux
// prints verbatim and names do not contain in practice; rows that do not
// parse are skipped, so a strange foreign window can never be misread.
var listFields = []string{
	"session_name", "window_id", "window_index", "window_name", "pane_pid", "pane_dead",
	"pane_dead_status", "pane_dead_signal", "@launcher", "@launcher_op", "@launcher_hash",
	"@launcher_ready", "@launcher_started", "@launcher_tag", "@launcher_docker", "@launcher_log",
	"@launcher_oneshot", "pid", "@launcher_name", "@launcher_restarts", "@launcher_restart_state",
	"session_group", "@concert_launcher_managed", "m:*concert_launcher_wrapper.bash *,#{pane_start_command}",
	"@launcher_request",
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
	var pending map[string]bool
	var err error
	for attempt := 0; ; attempt++ {
		var clock int64
		res, pending, clock, err = m.listWindows(ctx)
		if err != nil {
			return snap, err
		}
		if clock > 0 {
			snap.Clock = m.learnClock(snap.Taken, time.Now(), clock)
		} else if ahead := time.Duration(m.clockAhead.Load()); ahead != 0 {
			snap.Clock = snap.Taken.Add(ahead)
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
			// No server: no session exists (a first spawn need not look).
			m.spawnMu.Lock()
			m.learn(snap)
			m.spawnMu.Unlock()
			return snap, nil
		}
		return snap, fmt.Errorf("tmux list-windows on %s failed: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	snap.Windows = ParseWindows(res.Stdout)
	if pending != nil {
		begun(snap.Windows, pending)
	}
	// tmux fills in the exit status of a pane when it reaps the process, a
	// moment after the pane died. Debian's tmux (built with libutempter)
	// can miss the SIGCHLD altogether and keep the zombie forever (tmux#311,
	// #4559): libutempter puts in its own SIGCHLD handler while its helper
	// runs (tmux runs it as panes start and end), and a child that exits
	// meanwhile is never reported (a third of the stops of one process
	// here). A SIGCHLD of our own makes it reap. Locally it costs nothing:
	// sent at once, and the listing asked again 5 ms later (a stop of one
	// process took a median 76 ms instead of 30 when it waited 20 ms
	// before its first). Remotely it is a command: sent from the second look on, 20 ms
	// apart. Either way the look gives up on it after about 100 ms (a look
	// that takes longer holds up whoever waits for it, a Ctrl-C's last
	// look too).
	r, _ := ctx.Value(retryKey{}).(retry)
	if r.first.IsZero() {
		r.first = snap.Taken
	}
	local := executor.IsLocal(m.Host)
	more, pause := r.n < 5, 20*time.Millisecond
	if local {
		more, pause = time.Since(r.first) < 100*time.Millisecond, 5*time.Millisecond
	}
	for _, w := range snap.Windows {
		if (w.Marks.Managed || w.Foreign != "") && w.Dead && !w.ExitKnown && more {
			if w.ServerPID > 0 && local {
				_ = syscall.Kill(w.ServerPID, syscall.SIGCHLD)
			} else if w.ServerPID > 0 && r.n >= 1 {
				_, _ = m.Host.Run(ctx, executor.Command{Args: []string{"kill", "-s", "CHLD", strconv.Itoa(w.ServerPID)}})
			}
			time.Sleep(pause)
			return m.Snapshot(context.WithValue(ctx, retryKey{}, retry{n: r.n + 1, first: r.first}))
		}
	}
	m.spawnMu.Lock()
	m.learn(snap)
	m.spawnMu.Unlock()
	return snap, nil
}

type retryKey struct{}

// retry is a look asked again for an exit status tmux has not filled in:
// how many times, and when the first began.
type retry struct {
	n     int
	first time.Time
}

// resolveRule prints the machine's state directory and home: the two lines
// resolve reads.
const resolveRule = `printf '%s\n%s\n' "` + StateDirRule + `" "$HOME"`

// listWindows runs list-windows; on a remote machine whose state directory
// is not known yet, the same command finds it out too (its first listing
// is also its first command: a round trip saved on every operation).
func (m *Machine) listWindows(ctx context.Context) (res executor.Result, pending map[string]bool, clock int64, err error) {
	list := []string{"list-windows", "-a", "-F", listFormat()}
	if executor.IsLocal(m.Host) {
		res, err := m.run(ctx, list)
		return res, nil, 0, err
	}
	m.resolveMu.Lock()
	known, runDir := m.resolved, ""
	if m.opts.StateDir != "" {
		runDir = strings.TrimRight(m.opts.StateDir, "/") + "/run"
	}
	m.resolveMu.Unlock()
	// The env files are looked at after tmux listed the windows: a file
	// gone then was read by a pane that was in the listing (a pane made
	// after the look would not be), so Begun is never said too early.
	// The machine's clock comes with them (see Clock), every 10 s at most:
	// `launcher serve` lists a machine several times a second, and each
	// reading is a process started on the robot.
	tok := newToken()
	script := ""
	if !known {
		script = resolveRule + "; "
	}
	script += `t=$1 d=$2; shift 2; [ -n "$d" ] || d=$(` + resolveRule + ` | head -n 1)/run
"$@"; rc=$?
for f in "$d"/*.env; do [ -s "$f" ] && printf '%s %s\n' "$t" "${f##*/}"; done
`
	if last := m.clockRead.Load(); last == 0 || time.Since(time.Unix(0, last)) > 10*time.Second {
		script += `printf '%s clock %s\n' "$t" "$(date +%s)"
`
	}
	script += `exit $rc`
	argv := append([]string{"sh", "-c", script, "sh", tok, runDir}, m.tmux(list...)...)
	res, err = m.Host.Run(ctx, executor.Command{Args: argv})
	if err != nil {
		return res, nil, 0, err
	}
	rest := res.Stdout
	if !known {
		first, r, ok1 := bytes.Cut(rest, []byte("\n"))
		second, r, ok2 := bytes.Cut(r, []byte("\n"))
		if !ok1 || !ok2 {
			return res, nil, 0, fmt.Errorf("cannot resolve the state directory on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
		}
		m.learnPaths(string(first), string(second))
		rest = r
	}
	pending = map[string]bool{}
	var listing []byte
	for _, line := range bytes.SplitAfter(rest, []byte("\n")) {
		if name, ok := bytes.CutPrefix(line, []byte(tok+" ")); ok {
			if c, ok := bytes.CutPrefix(bytes.TrimSpace(name), []byte("clock ")); ok {
				clock, _ = strconv.ParseInt(string(c), 10, 64)
				continue
			}
			tag, _, _ := strings.Cut(string(bytes.TrimSpace(name)), "-")
			pending[tag] = true
			continue
		}
		listing = append(listing, line...)
	}
	res.Stdout = listing
	if res.ExitCode == 127 {
		return res, nil, 0, fmt.Errorf("tmux is not installed or not in PATH on %s", m.Machine())
	}
	return res, pending, clock, nil
}

// Clock is the machine's wall clock now: ours, moved by the difference its
// last reading showed (see executor.Snapshot.Clock).
func (m *Machine) Clock() time.Time {
	return time.Now().Add(time.Duration(m.clockAhead.Load()))
}

// learnClock keeps how far ahead of ours the machine's clock is, from a
// listing that began at sent and was answered at got, in which the machine
// read unix (seconds) from its clock, and returns the machine's clock at
// sent (zero when the two are taken as one). The reading was made
// somewhere between sent and got, within a second that began at unix: the
// middle of both is its best guess. Clocks within 2 s of each other
// count as one, so the reading's own error never moves a time; a listing
// that took over a second (a stalled link) keeps the last difference.
func (m *Machine) learnClock(sent, got time.Time, unix int64) time.Time {
	var ahead time.Duration
	if took := got.Sub(sent); took > time.Second {
		ahead = time.Duration(m.clockAhead.Load())
	} else {
		ahead = time.Unix(unix, 0).Add(500 * time.Millisecond).Sub(sent.Add(took / 2))
		if ahead > -2*time.Second && ahead < 2*time.Second {
			ahead = 0
		}
		m.clockAhead.Store(int64(ahead))
		m.clockRead.Store(got.UnixNano())
	}
	if ahead == 0 {
		return time.Time{}
	}
	return sent.Add(ahead)
}

// begun sets Begun on the managed windows of a remote listing whose env
// files it saw (pending: the tags that still had one).
func begun(ws []executor.Window, pending map[string]bool) {
	for i := range ws {
		if t := ws[i].Marks.Tag; t != "" && !pending[t] {
			ws[i].Begun = true
		}
	}
}

// readyValue is @launcher_ready: "0", or "1 UNIX_MS" with the time the
// ready check passed (for `launcher analyze`).
func readyValue(ready bool, at int64) string {
	switch {
	case !ready:
		return "0"
	case at > 0:
		return "1 " + strconv.FormatInt(at, 10)
	}
	return "1"
}

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
			Ready:   f[11] == "1" || strings.HasPrefix(f[11], "1 "),
			Tag:     f[13],
			Docker:  f[14],
			Log:     f[15],
			OneShot: f[16] == "1",
		}
		w.Marks.Started, _ = strconv.ParseInt(f[12], 10, 64)
		if at, ok := strings.CutPrefix(f[11], "1 "); ok {
			w.Marks.ReadyAt, _ = strconv.ParseInt(at, 10, 64)
		}
		w.ServerPID, _ = strconv.Atoi(f[17])
		w.Marks.Name = f[18]
		w.Marks.Restarts = parseRestartMarks(f[19], f[20])
		w.Group = f[21]
		if !w.Marks.Managed && (f[22] == "1" || f[23] == "1") {
			w.Foreign = executor.ConcertLauncher
		}
		w.Marks.Request = f[24]
		ws = append(ws, w)
	}
	return ws
}

// parseRestartMarks reads the restart loop's options ("COUNT EXIT MS";
// "backoff UNTIL_MS EXIT" or "gaveup WHY"); what does not parse is zero.
func parseRestartMarks(restarts, state string) executor.RestartMarks {
	var r executor.RestartMarks
	if f := strings.Fields(restarts); len(f) == 3 {
		r.Count, _ = strconv.Atoi(f[0])
		r.LastExit, _ = strconv.Atoi(f[1])
		r.Last, _ = strconv.ParseInt(f[2], 10, 64)
	}
	kind, rest, _ := strings.Cut(state, " ")
	switch kind {
	case "backoff":
		if f := strings.Fields(rest); len(f) == 2 {
			r.BackoffUntil, _ = strconv.ParseInt(f[0], 10, 64)
			r.BackoffExit, _ = strconv.Atoi(f[1])
		}
	case "gaveup":
		r.GaveUp = rest
	}
	return r
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
		{"@launcher_ready", readyValue(mk.Ready, mk.ReadyAt)},
		{"@launcher_started", strconv.FormatInt(mk.Started, 10)},
		{"@launcher_tag", mk.Tag},
		{"@launcher_docker", mk.Docker},
		{"@launcher_log", mk.Log},
		{"@launcher_oneshot", b(mk.OneShot)},
		{"@launcher_name", mk.Name},
		{"@launcher_request", mk.Request},
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

// SetMarks writes and removes window user options in one invocation.
func (m *Machine) SetMarks(ctx context.Context, windowID string, u executor.MarkUpdate) error {
	cmds := m.setCommands(windowID, u)
	if len(cmds) == 0 {
		return nil
	}
	_, err := m.batch(ctx, cmds)
	if errors.Is(err, errServerGone) {
		_, err = m.batch(ctx, cmds) // setting options twice is harmless
	}
	return err
}

// SetMarksAndList is SetMarks with the machine's windows listed in the same
// invocation, after the marks are set (one round trip instead of two for a
// caller that looks next). ok is false when the listing cannot stand for a
// Snapshot (a dead pane whose exit status tmux has not read yet).
func (m *Machine) SetMarksAndList(ctx context.Context, windowID string, u executor.MarkUpdate) (snap executor.Snapshot, ok bool, err error) {
	snap.Taken = time.Now()
	_, list, listed, err := m.batchListing(ctx, m.setCommands(windowID, u))
	if errors.Is(err, errServerGone) {
		return snap, false, m.SetMarks(ctx, windowID, u)
	}
	if err != nil || !listed {
		return snap, false, err
	}
	snap.Windows = ParseWindows([]byte(strings.Join(list, "\n")))
	if ahead := time.Duration(m.clockAhead.Load()); ahead != 0 {
		snap.Clock = snap.Taken.Add(ahead)
	}
	for _, w := range snap.Windows {
		if (w.Marks.Managed || w.Foreign != "") && w.Dead && !w.ExitKnown {
			return snap, false, nil
		}
	}
	m.spawnMu.Lock()
	m.learn(snap)
	m.spawnMu.Unlock()
	return snap, true, nil
}

// setCommands are the set-option commands of a mark update.
func (m *Machine) setCommands(windowID string, u executor.MarkUpdate) [][]string {
	var cmds [][]string
	if u.Op != nil {
		if *u.Op == "" {
			cmds = append(cmds, []string{"set-option", "-w", "-u", "-t", windowID, "@launcher_op"})
		} else {
			cmds = append(cmds, []string{"set-option", "-w", "-t", windowID, "@launcher_op", *u.Op})
		}
	}
	if u.Ready != nil {
		cmds = append(cmds, []string{"set-option", "-w", "-t", windowID, "@launcher_ready", readyValue(*u.Ready, m.Clock().UnixMilli())})
	}
	if len(cmds) > 0 {
		cmds = append(cmds, doorbell)
	}
	return cmds
}

// ChangedChannel is the tmux wait-for channel every change launcher makes
// to a window signals (launcher's own commands, and a pane's restart loop
// when it acts), so a watcher wakes at once instead of at its next poll.
// A process's exit does not ring it (a tmux call in the pane's exit path
// would delay the pane's end): the watcher's poll sees it.
const ChangedChannel = "launcher-changed"

// doorbell is the command that signals ChangedChannel. A signal nobody
// waits for is kept by tmux for the next waiter, so none is lost.
var doorbell = []string{"wait-for", "-S", ChangedChannel}

// WaitChange returns when a launcher changed a window on this machine
// (see ChangedChannel), or when ctx ends.
func (m *Machine) WaitChange(ctx context.Context) error {
	res, err := m.run(ctx, []string{"wait-for", ChangedChannel})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("tmux wait-for on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// noteScript appends lines to a log ($1), never through a symbolic link.
const noteScript = `umask 077; f=$1; shift; [ -L "$f" ] && exit 1; printf '%s\n' "$@" >> "$f"`

// Adopt makes a foreign window launcher's: its note goes to the log, then
// one tmux invocation sets the marks and (a live pane) pipes the output to
// the log writer. The process is not touched.
func (m *Machine) Adopt(ctx context.Context, w executor.Window, spec executor.AdoptSpec) error {
	if err := m.resolve(ctx); err != nil {
		return err
	}
	log := spec.Marks.Log
	if err := m.install(ctx); err != nil {
		return err
	}
	if err := m.ensureDir(ctx, log[:strings.LastIndex(log, "/")]); err != nil {
		return err
	}
	if len(spec.Note) > 0 {
		stamp := time.Now().Format("[2006-01-02 15:04:05.000] ")
		args := []string{"sh", "-c", noteScript, "sh", log}
		for _, l := range spec.Note {
			args = append(args, stamp+l)
		}
		res, err := m.Host.Run(ctx, executor.Command{Args: args})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("writing %s on %s: %s", log, m.Machine(), strings.TrimSpace(string(res.Stderr)))
		}
	}
	cmds := markOptions(w.ID, spec.Marks)
	if !w.Dead {
		cmds = append(cmds, []string{"pipe-pane", "-t", w.ID}, []string{"pipe-pane", "-t", w.ID, m.pipeCommand(log, spec.Marks.Tag, spec.Rotate, "")})
	}
	_, err := m.batch(ctx, append(cmds, doorbell))
	if err != nil {
		return fmt.Errorf("adopting window %s (%s:%s): %w", w.ID, w.Session, w.Name, err)
	}
	return nil
}

// CloseWindow kills a window by ID.
func (m *Machine) CloseWindow(ctx context.Context, windowID string) error {
	res, err := m.run(ctx, []string{"kill-window", "-t", windowID}, doorbell)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 && !noServer(res.Stderr) {
		return fmt.Errorf("tmux kill-window on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}
