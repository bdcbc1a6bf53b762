// Package executor is the seam between the engine and the machines it drives.
//
// It holds interfaces and plain data only. A Host runs commands on one machine
// (local processes, or an SSH connection); a Machine keeps long-running
// processes in tmux windows on a Host and answers for their state. The engine
// talks to these interfaces; concrete implementations live in sub-packages
// (executor/local, executor/ssh, executor/tmux, executor/fake) and are wired
// together only in cmd/launcher.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Local is the machine name of the computer the launcher runs on.
const Local = "local"

// Command is a program and its arguments. It is never a shell string:
// transports that need one (SSH) quote every argument, so arguments reach
// the program byte for byte.
type Command struct {
	Args []string
	// Env is added to the environment the program inherits.
	Env []EnvVar
	// Dir is the working directory ("" = the host's default).
	Dir string
	// Stdin is fed to the program; nil means empty input.
	Stdin []byte
}

// Result is the outcome of a command that ran to completion.
type Result struct {
	ExitCode int
	Stdout   []byte
	Stderr   []byte
}

// GroupRunner is a Host that runs a command in a process group of its own,
// ends what is left of that group when the command ends, and bounds it by a
// timeout, all without helper programs: the local host, where a ready check
// then costs one exec instead of three (coreutils timeout, a wrapper bash,
// the check's bash). A command that runs out of time is killed with its
// group and reported as exit code 124, as timeout(1) reports it.
type GroupRunner interface {
	RunGroup(ctx context.Context, cmd Command, timeout time.Duration) (Result, error)
}

// IsLocal reports whether h runs commands on this computer.
func IsLocal(h Host) bool { return h.Machine() == Local }

// Host runs commands on one machine. Implementations are safe for concurrent
// use; a non-zero exit status is reported in Result, and the error is reserved
// for failures to run at all (transport down, context cancelled).
type Host interface {
	// Machine is the machine string this host was dialled for ("local",
	// "user@host:port", an ssh_config alias).
	Machine() string
	// Run runs cmd to completion and captures its output.
	Run(ctx context.Context, cmd Command) (Result, error)
	// Stream starts cmd and returns its standard output as it is produced;
	// it is used to follow logs. Cancelling ctx or calling Close stops it.
	Stream(ctx context.Context, cmd Command) (Stream, error)
}

// Stream is the output of a running command.
type Stream interface {
	io.Reader
	// Wait waits for the command to end, returning nil when it exits 0.
	Wait() error
	// Close stops the command and releases its resources.
	Close() error
}

// Terminal is implemented by hosts that can run a command attached to the
// user's terminal (local: the terminal itself; SSH: a remote PTY). It is used
// to attach to tmux windows.
type Terminal interface {
	RunTerminal(ctx context.Context, cmd Command, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// Attacher is implemented by machines whose windows a terminal can show
// (`launcher attach`, `mon`).
type Attacher interface {
	// AttachCommand is the argv that attaches a terminal to the window; it
	// runs on the machine.
	AttachCommand(session, windowID, viewSession string) []string
}

// MarkLister is implemented by machines that can list their windows in the
// invocation that sets a window's marks: the listing shows the marks set
// and costs no round trip of its own. ok is false when it cannot serve as
// a Snapshot.
type MarkLister interface {
	SetMarksAndList(ctx context.Context, windowID string, u MarkUpdate) (snap Snapshot, ok bool, err error)
}

// Notifier is implemented by machines that can tell a watcher when a
// launcher changed one of their windows, so it need not wait for its next
// poll.
type Notifier interface {
	// WaitChange returns when a launcher changed a window on the machine,
	// or when ctx ends (with its error). A change made while nobody
	// waited ends the next wait at once.
	WaitChange(ctx context.Context) error
}

// Connector hands out Machines by machine string, dialling them on first use
// and sharing them afterwards.
type Connector interface {
	Machine(ctx context.Context, name string) (Machine, error)
}

// UnavailableError reports that a machine could not be reached or that the
// link to it failed during an operation. The engine shows such machines as
// UNAVAILABLE instead of failing the whole command.
type UnavailableError struct {
	Machine string
	Op      string
	Err     error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("machine %s unavailable (%s): %v", e.Machine, e.Op, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err (or an error it wraps) is an UnavailableError.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// ErrNotSupported is returned for machine forms this build cannot reach.
var ErrNotSupported = errors.New("not supported")

// ErrNotStarted is returned by Signal for SIGINT and SIGQUIT when the pane
// has not started its command yet (its shell still reads the user's
// .bashrc): a key pressed then would be lost, and would cut the .bashrc
// short. The mark update was applied; the caller sends the signal again.
var ErrNotStarted = errors.New("the pane has not started its command yet")

// ErrRaced is returned by Spawn when another client changed the window
// (created a same-name window, respawned it) first: the caller looks again.
var ErrRaced = errors.New("another client changed the window first")

// Signal names a way to ask a process to stop.
type Signal string

// Signals used by the stop sequence. SIGINT and SIGQUIT are delivered as keys
// into the pane (the terminal driver signals the foreground job, exactly as an
// operator pressing the keys would); SIGTERM and SIGKILL go to every process
// of the pane's session and, for containers, to the tagged processes inside.
const (
	SIGINT  Signal = "INT"
	SIGQUIT Signal = "QUIT"
	SIGTERM Signal = "TERM"
	SIGKILL Signal = "KILL"
)

// Window is one tmux window as seen in a single listing of the server.
type Window struct {
	Session string
	ID      string // "@12": stable for the life of the window
	Index   int
	Name    string
	PanePID int
	Dead    bool
	// ExitCode is the pane's exit status, or 128+signal when it was killed
	// by a signal. Valid only when Dead and ExitKnown.
	ExitCode  int
	ExitKnown bool
	Marks     Marks
	// ServerPID is the pid of the tmux server that holds the window.
	ServerPID int
	// Group is the session group of Session ("" when not grouped):
	// concert_launcher put every process in a session of its own grouped
	// with the main one, and a window lives on in the group after the
	// main session is killed.
	Group string
	// Foreign names the tool that started a window launcher does not own,
	// when it can be told ("concert_launcher": its wrapper in the pane,
	// or its @concert_launcher_managed option), else "".
	Foreign string
	// Begun is set by a listing that could tell that the pane had begun
	// its command when listed (its run's env file was read and removed):
	// a key signal then needs no look of its own. False: not known.
	Begun bool
}

// AdoptSpec is what Adopt writes on a window.
type AdoptSpec struct {
	Marks  Marks
	Rotate LogRotation
	// Note is written to Marks.Log, timestamped as the log's lines are,
	// before the first byte of the pane's output.
	Note []string
}

// ConcertLauncher is the Foreign of a window concert_launcher started, and
// the Foreign of the processes of its runs.
const ConcertLauncher = "concert_launcher"

// Marks is the launcher's state kept in tmux window user options, so that it
// lives exactly as long as the window and a launcher killed mid-operation
// leaves nothing stale behind.
type Marks struct {
	Managed bool   // @launcher: the window is ours
	Op      string // @launcher_op: "starting|stopping host pid pidstart unix" (the machine's clock)
	Hash    string // @launcher_hash: hash of the rendered command
	Ready   bool   // @launcher_ready: the ready check passed ("1 UNIX_MS")
	// ReadyAt is when it passed, Unix milliseconds in the machine's clock
	// (0: not known, a window of an older launcher).
	ReadyAt int64
	Started int64  // @launcher_started: start time, Unix milliseconds (the machine's clock)
	Tag     string // @launcher_tag: LAUNCHER_TAG of this run (kills inside containers)
	Docker  string // @launcher_docker: container the process runs in
	Log     string // @launcher_log: log file of the process
	OneShot bool   // @launcher_oneshot: a one-shot command
	// Name is the process the window runs (@launcher_name). Windows are
	// identified by it, not by their tmux name, which a program printing a
	// title escape or a user's rename-window can change.
	Name string
	// Restarts is what the pane's restart loop recorded; the loop writes
	// it, launcher only reads it.
	Restarts RestartMarks
	// Request is what the run was started with (@launcher_request: its
	// variants and params, opaque here), so that a later look can tell
	// whether the config would now run something else.
	Request string
}

// RestartMarks are the restart loop's record of a window's run
// (@launcher_restarts and @launcher_restart_state).
type RestartMarks struct {
	// Count restarts so far; LastExit is the exit code that caused the
	// last one, at Last (Unix milliseconds).
	Count    int
	LastExit int
	Last     int64
	// BackoffUntil (Unix milliseconds) is set while the loop waits to
	// restart after an exit with code BackoffExit.
	BackoffUntil int64
	BackoffExit  int
	// GaveUp says why the loop stopped restarting (max_restarts).
	GaveUp string
}

// RestartPolicy is the restart loop a pane runs around its process.
type RestartPolicy struct {
	// Always restarts after any exit; otherwise only after an unclean one
	// (not 0, 130 or 143).
	Always bool
	// Delay before a restart, doubled for each restart still inside
	// Window, up to MaxDelay.
	Delay, MaxDelay time.Duration
	// Max restarts within Window before the loop gives up (0: no limit).
	Max    int
	Window time.Duration
	// ClearReady drops the ready mark when the process exits (its ready
	// check has to pass again).
	ClearReady bool
}

// MarkUpdate changes the marks an operation keeps up to date; a nil field
// is left as it is.
type MarkUpdate struct {
	// Op sets @launcher_op; a pointer to "" removes it.
	Op *string
	// Ready sets @launcher_ready.
	Ready *bool
}

// SetOp returns an update of the op mark ("" removes it).
func SetOp(op string) MarkUpdate { return MarkUpdate{Op: &op} }

// SetReady returns an update of the ready mark.
func SetReady(ready bool) MarkUpdate { return MarkUpdate{Ready: &ready} }

// And combines two updates (fields of o win).
func (u MarkUpdate) And(o MarkUpdate) MarkUpdate {
	if o.Op != nil {
		u.Op = o.Op
	}
	if o.Ready != nil {
		u.Ready = o.Ready
	}
	return u
}

// Snapshot is the state of every window on a machine's tmux server, taken
// with one query.
type Snapshot struct {
	Taken time.Time
	// Clock is the machine's own wall clock when it was listed, zero when
	// it is ours (the local machine, or one whose clock is within 2 s of
	// ours). Times in marks are in the machine's clock: a robot and an
	// operator's laptop often disagree by minutes (no NTP on the robot's
	// network), and launchers on both must judge one mark alike.
	Clock   time.Time
	Windows []Window
}

// Offset is how far the machine's clock is ahead of ours at the listing.
func (s Snapshot) Offset() time.Duration {
	if s.Clock.IsZero() {
		return 0
	}
	return s.Clock.Sub(s.Taken)
}

// Find returns the windows of session that hold process name (there may be
// several: a foreign duplicate makes the target ambiguous). A launcher window
// is found by its @launcher_name mark whatever its tmux name is now; a window
// without that mark (a foreign one, or one started by an older launcher) by
// its tmux name.
//
// A window of a session grouped with session counts too (one listing row
// per session of the group, one window): concert_launcher's windows live on
// in its per-process sessions after its main session is killed.
func (s Snapshot) Find(session, name string) []Window {
	var out []Window
	seen := map[string]int{}
	for _, w := range s.Windows {
		if w.Session != session && (w.Group == "" || w.Group != session) || !w.Holds(name) {
			continue
		}
		if i, ok := seen[w.ID]; ok {
			if w.Session == session {
				out[i] = w
			}
			continue
		}
		seen[w.ID] = len(out)
		out = append(out, w)
	}
	return out
}

// Holds reports whether w is (or claims to be) the window of process name.
func (w Window) Holds(name string) bool {
	if w.Marks.Managed && w.Marks.Name != "" {
		return w.Marks.Name == name
	}
	return w.Name == name
}

// HasSession reports whether the snapshot saw session.
func (s Snapshot) HasSession(session string) bool {
	for _, w := range s.Windows {
		if w.Session == session {
			return true
		}
	}
	return false
}

// SpawnSpec describes a process to start in a tmux window.
type SpawnSpec struct {
	Session string
	Name    string
	// Script is the user's command, run on the target by `bash -ic` (inside
	// the container when Docker is set).
	Script string
	Docker string
	Env    []EnvVar
	Cwd    string
	// Replace is the ID of a dead managed window to respawn; empty creates a
	// new window (and the session if needed).
	Replace string
	Marks   Marks
	// Restart is the restart loop to run around the process (nil: run it
	// once).
	Restart *RestartPolicy
	// Rotate is how the log writer rotates the log (zero: never).
	Rotate LogRotation
}

// LogQuery selects lines of a log for ReadLog.
type LogQuery struct {
	// Since keeps lines stamped at most this long ago (0: all).
	Since time.Duration
	// Run keeps the output of one run (its tag, as "(run TAG)" lines say).
	Run string
	// Last keeps the last Last lines of what the other fields select (0:
	// all).
	Last int
	// Runs keeps only the lines that open and close runs (to list them).
	Runs bool
}

// LogRotation tells the log writer to rename the log to LOG.1 (LOG.1 to
// LOG.2 …, keeping Keep files) once it reaches MaxSize bytes.
type LogRotation struct {
	MaxSize int64
	Keep    int
}

// EnvVar is one environment variable; order is kept as written.
type EnvVar struct {
	Name  string
	Value string
}

// ExecSpec describes a short command run to completion on a machine (a ready
// check, `launcher.exec`): `bash -c` on the host, or `docker exec -i … bash -ic`
// in a container.
type ExecSpec struct {
	Script  string
	Docker  string
	Env     []EnvVar
	Cwd     string
	Timeout time.Duration
	// EndChildren ends what the command left running (in its process
	// group) when it ends: a ready check must not leave a child per try.
	// Off for commands that may start daemons on purpose.
	EndChildren bool
}

// TaggedProcess is a process that carries a launcher run's environment.
type TaggedProcess struct {
	PID     int
	Tag     string
	Process string
	Session string
	// Log is the run's log file: it tells apart launchers with other
	// state directories (another user setup, a test) on one machine.
	Log string
	// Foreign is ConcertLauncher for a process of a concert_launcher run
	// (its wrapper, its `script`, and what they started; Session is ""
	// then: its command lines do not say), else "". Output is that run's
	// log (script's file, /tmp/NAME.stdout).
	Foreign, Output string
}

// ConcertTag is the Tag of the processes of concert_launcher's runs of
// process name (as Tagged reports them, and SignalTagged takes it).
func ConcertTag(name string) string { return ConcertLauncher + ":" + name }

// ProcessInfo is one row of a process table read on a machine.
type ProcessInfo struct {
	PID, PPID int
	RSSKiB    int64
	CPU       float64 // percent of one core over the process lifetime
	Args      string
}

// Load is a machine's load average and how many CPUs it has (for the
// operator's view: a load above the CPUs is a machine that falls behind).
type Load struct {
	One, Five, Fifteen float64
	CPUs               int
}

// LoadReader is implemented by machines that read their load average in
// the same command as their process table.
type LoadReader interface {
	ProcessesAndLoad(ctx context.Context) ([]ProcessInfo, *Load, error)
}

// Machine keeps processes in tmux windows on one host and answers for them.
// It is what the engine needs, nothing more: running arbitrary commands
// goes through Exec (bounded, in the process's container when it has one);
// attaching a terminal is the optional Attacher and Terminal.
type Machine interface {
	// Machine is the machine string this machine was dialled for.
	Machine() string
	// Snapshot lists every window of the host's tmux server in one query.
	// Callers filter by session and name; foreign windows are never touched.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Clock is the machine's wall clock now, as its listings last read
	// it (ours until one has): the time written in marks (an operation's
	// heartbeat, a start, a ready time), so that every launcher reads
	// them against the same clock.
	Clock() time.Time
	// Spawn starts spec in a window (creating the session when needed) with
	// its output piped, timestamped, to the process log from the first byte.
	// The marks are set in the same tmux invocation that creates the window.
	Spawn(ctx context.Context, spec SpawnSpec) (Window, error)
	// SetMarks changes the marks of a window an operation updates while it
	// runs (its op mark and readiness).
	SetMarks(ctx context.Context, windowID string, u MarkUpdate) error
	// Signal asks the process in w to stop with sig (see Signal). The mark
	// update is written in the same tmux invocation as a key signal. A key
	// signal to a pane that has not started its command yet is not sent:
	// the marks are, and the error is ErrNotStarted.
	Signal(ctx context.Context, w Window, sig Signal, u MarkUpdate) error
	// CloseWindow removes a window (used for one-shots that succeeded).
	CloseWindow(ctx context.Context, windowID string) error
	// Adopt makes w, a window another tool started, launcher's without
	// touching its process: the marks are set, and a live pane's output
	// goes to the log from now on, after spec.Note.
	Adopt(ctx context.Context, w Window, spec AdoptSpec) error
	// Exec runs a short command to completion.
	Exec(ctx context.Context, spec ExecSpec) (Result, error)
	// CheckContainer fails with a clear error when the container is missing
	// or not running on this machine.
	CheckContainer(ctx context.Context, name string) error
	// LogPath is the log file of a process on this machine (the per-user
	// state directory there is looked up on first use).
	LogPath(ctx context.Context, session, name string) (string, error)
	// LogHead returns the size of a log file (0 when missing) and its last
	// n lines before that size, so a follower can continue exactly there.
	LogHead(ctx context.Context, path string, n int) (size int64, lines []string, err error)
	// FollowLog streams a log file from a byte offset, waiting for the file
	// to appear and to grow, until the stream is closed.
	FollowLog(ctx context.Context, path string, offset int64) (Stream, error)
	// ReadLog streams the lines of a log and its rotated files (LOG.N …
	// LOG.1, LOG: oldest first) that q selects, filtered on the machine so
	// only what is asked for crosses the link.
	ReadLog(ctx context.Context, path string, q LogQuery) (Stream, error)
	// Processes reads the machine's process table (for pstree).
	Processes(ctx context.Context) ([]ProcessInfo, error)
	// Tagged lists the processes on the machine that carry a launcher
	// run's environment (LAUNCHER_TAG, _PROCESS, _SESSION): with the
	// windows, it finds processes that outlived their pane.
	Tagged(ctx context.Context) ([]TaggedProcess, error)
	// SignalTagged sends sig to every process of the given runs (by
	// LAUNCHER_TAG), wherever they are on the machine.
	SignalTagged(ctx context.Context, tags []string, sig Signal) error
	// Close releases the machine's resources.
	Close() error
}
