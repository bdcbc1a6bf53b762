package tmux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Batching ("group commit"): the tmux work of concurrent callers — spawns
// of independent processes, marks, C-c to fifty windows — is sent in one
// tmux invocation instead of one each. The first caller starts a leader that
// runs invocations back to back; whoever arrives while one is under way
// rides in the next. Each request ends with a `display-message -p TOKEN`, so
// the output is attributed to its request and a request that did not run
// (tmux stops a command list at the first failure) is told apart from one
// that did.

// batchTimeout bounds one tmux invocation.
const batchTimeout = 60 * time.Second

// tmux refuses a command list larger than its message: 16 KiB less a
// header, where each argument counts with its NUL (the separators too).
// Room is kept for the listing an invocation may end with. At 1000 windows
// every tmux invocation costs the server 12 ms before its first command, so
// a batch holds as many spawns as fit (nine, not five as with a budget
// counted loosely).
const (
	maxBatchRequests = 64
	tmuxMessageMax   = 16384 - 16 - 4
	maxBatchBytes    = tmuxMessageMax - 2048
)

type batchReq struct {
	cmds     [][]string
	wantList bool     // wants the listing the invocation ends with
	list     []string // that listing (shared: read only)
	listed   bool
	file     *envWrite // written on the machine before tmux runs (remote spawns)
	token    string
	size     int
	out      []string
	err      error
	done     chan struct{}
}

type batcher struct {
	mu      sync.Mutex
	queue   []*batchReq
	leading bool
}

// errServerGone is tmux's answer when the server died (or was still dying
// after kill-server) while a client talked to it.
func serverGone(stderr string) bool { return strings.Contains(stderr, "server exited unexpectedly") }

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "LTOK" + hex.EncodeToString(b)
}

// batch runs cmds (in order, as one tmux command list) together with other
// callers' and returns the lines they printed.
func (m *Machine) batch(ctx context.Context, cmds [][]string) ([]string, error) {
	return m.batchWith(ctx, cmds, nil)
}

// batchWith is batch with an env file written first, in the same command
// on the machine (a remote spawn costs one round trip, not two).
func (m *Machine) batchWith(ctx context.Context, cmds [][]string, file *envWrite) ([]string, error) {
	req := &batchReq{cmds: cmds, file: file, token: newToken(), done: make(chan struct{})}
	return m.submit(ctx, req)
}

// batchListing is batch with the machine's windows listed at the end of the
// invocation, after every request in it (nil when they were not).
func (m *Machine) batchListing(ctx context.Context, cmds [][]string) (out, list []string, listed bool, err error) {
	req := &batchReq{cmds: cmds, wantList: true, token: newToken(), done: make(chan struct{})}
	out, err = m.submit(ctx, req)
	if err != nil {
		return nil, nil, false, err
	}
	return out, req.list, req.listed, nil
}

// submit queues req for the next invocation and waits for its answer.
func (m *Machine) submit(ctx context.Context, req *batchReq) ([]string, error) {
	file := req.file
	for _, c := range req.cmds {
		req.size += 2 // the ";" before it
		for _, a := range c {
			req.size += len(a) + 1
		}
	}
	req.size += len("; display-message -p ") + len(req.token) + 4
	b := &m.batcher
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if !b.leading {
		b.leading = true
		go m.lead()
	}
	b.mu.Unlock()
	select {
	case <-req.done:
		return req.out, req.err
	case <-ctx.Done():
	}
	// A request the leader has not taken yet is withdrawn: it never runs.
	// One it has taken may run still, after its caller has gone.
	b.mu.Lock()
	for i, r := range b.queue {
		if r == req {
			b.queue = append(b.queue[:i:i], b.queue[i+1:]...)
			b.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	b.mu.Unlock()
	if file != nil {
		// A spawn under way is finished whatever comes (see Spawn): its
		// caller learns the window it made, unless tmux hangs.
		select {
		case <-req.done:
			return req.out, req.err
		case <-time.After(spawnGrace):
		}
	}
	return nil, &inFlightError{ctx.Err()}
}

// inFlightError is batch's answer to a caller that gave up while its
// commands were already under way: whether they ran is not known (a spawn
// must not take back what its window may still need).
type inFlightError struct{ err error }

func (e *inFlightError) Error() string {
	return e.err.Error() + " (its tmux commands were already under way)"
}

func (e *inFlightError) Unwrap() error { return e.err }

func (m *Machine) lead() {
	b := &m.batcher
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.leading = false
			b.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(b.queue) && n < maxBatchRequests && (n == 0 || size+b.queue[n].size < maxBatchBytes) {
			size += b.queue[n].size
			n++
		}
		reqs := append([]*batchReq(nil), b.queue[:n]...)
		b.queue = b.queue[n:]
		b.mu.Unlock()
		m.runBatch(reqs)
	}
}

// runBatch runs one tmux invocation for reqs and settles each of them;
// requests that did not get to run go back to the front of the queue.
func (m *Machine) runBatch(reqs []*batchReq) {
	var args []string
	for _, r := range reqs {
		for _, c := range r.cmds {
			if len(args) > 0 {
				args = append(args, ";")
			}
			args = append(args, c...)
		}
		if len(args) > 0 {
			args = append(args, ";")
		}
		args = append(args, "display-message", "-p", r.token)
	}
	// One listing at the end serves every request that wants one (a
	// listing each would make a thousand marks a thousand listings).
	listToken := ""
	for _, r := range reqs {
		if r.wantList {
			listToken = newToken()
			args = append(args, ";", "list-windows", "-a", "-F", listFormat(), ";", "display-message", "-p", listToken)
			break
		}
	}
	// The invocation serves many callers: no single caller's context may
	// cancel it.
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	cmd := executor.Command{Args: m.tmux(args...)}
	var files []*batchReq
	for _, r := range reqs {
		if r.file != nil && !r.file.written {
			files = append(files, r)
		}
	}
	if len(files) > 0 {
		cmd = writeThenRun(files, cmd.Args)
	}
	res, err := m.Host.Run(ctx, cmd)
	if err == nil && len(files) > 0 {
		if failed := fileFailures(res); len(failed) > 0 {
			cancel()
			m.settleFileFailures(reqs, failed)
			return
		}
		for _, r := range files {
			r.file.written = true
		}
	}
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("tmux on %s did not answer `%s` within %s (is its server stopped or hung?)", m.Machine(), reqs[0].cmds[0][0], batchTimeout)
	}
	cancel()
	if err == nil && res.ExitCode == 127 {
		err = fmt.Errorf("tmux is not installed or not in PATH on %s", m.Machine())
	}
	if err != nil {
		for _, r := range reqs {
			r.err = err
			close(r.done)
		}
		return
	}
	lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
	stderr := strings.TrimSpace(string(res.Stderr))
	i := 0
	var held []*batchReq // settled once the listing is read
	defer func() {
		for _, r := range held {
			close(r.done)
		}
	}()
	for k, r := range reqs {
		var out []string
		found := false
		for ; i < len(lines); i++ {
			if lines[i] == r.token {
				found = true
				i++
				break
			}
			out = append(out, lines[i])
		}
		if found {
			r.out = out
			if r.wantList {
				held = append(held, r)
			} else {
				close(r.done)
			}
			if k == len(reqs)-1 && listToken != "" {
				var list []string
				for ; i < len(lines) && lines[i] != listToken; i++ {
					list = append(list, lines[i])
				}
				if i < len(lines) {
					for _, h := range held {
						h.list, h.listed = list, true
					}
				}
			}
			continue
		}
		// tmux stops a command list at its first failure: r failed, and
		// the requests after it did not run.
		switch {
		case serverGone(stderr):
			r.err = errServerGone
		case res.ExitCode == 0:
			r.err = fmt.Errorf("tmux on %s gave no answer for `%s` (its server may have restarted meanwhile; try again)", m.Machine(), strings.Join(r.cmds[0], " "))
		default:
			r.err = &tmuxError{machine: m.Machine(), msg: stderr}
		}
		close(r.done)
		// The requests after r did not run through no fault of theirs: they
		// go again (each invocation settles at least one request, so this
		// ends).
		again := reqs[k+1:]
		if len(again) > 0 {
			b := &m.batcher
			b.mu.Lock()
			b.queue = append(again, b.queue...)
			b.mu.Unlock()
		}
		return
	}
}

// errServerGone reports that the tmux server went away during a command:
// whether it ran is unknown.
var errServerGone = errors.New("the tmux server exited unexpectedly")

// tmuxError is a failed tmux command with tmux's message. tmux has no
// error codes: what the message says is read here, and only here.
type tmuxError struct {
	machine string
	msg     string
}

func (e *tmuxError) Error() string { return fmt.Sprintf("tmux on %s: %s", e.machine, e.msg) }

// guardTaken: the atomic guard of a new window found the process's window
// (another client created it first).
func (e *tmuxError) guardTaken() bool { return strings.Contains(e.msg, "already set: @launcher_guard") }

// cantFindWindow: a target named a window that is not there (the
// guard's lookup on a tmux whose if-shell refuses a missing target).
func (e *tmuxError) cantFindWindow() bool { return strings.Contains(e.msg, "can't find window") }

// stillActive: respawn-window found the pane alive (another client
// respawned it first).
func (e *tmuxError) stillActive() bool { return strings.Contains(e.msg, "still active") }

// raced: another client took the window index or created the session.
func (e *tmuxError) raced() bool {
	return strings.Contains(e.msg, "index") && strings.Contains(e.msg, "in use") || strings.Contains(e.msg, "duplicate session")
}

// gone: the session (or the whole server) went away since it was listed:
// its last window closed (a one-shot that succeeded), or a user killed it.
func (e *tmuxError) gone() bool {
	return strings.Contains(e.msg, "can't find session") || strings.Contains(e.msg, "no such session") || noServer([]byte(e.msg))
}

// asTmuxError returns the tmux message behind err, if there is one.
func asTmuxError(err error) (*tmuxError, bool) {
	var te *tmuxError
	ok := errors.As(err, &te)
	return te, ok
}

// envWrite is the env file of a remote spawn, written by the invocation
// that creates its window.
type envWrite struct {
	path, log string
	text      []byte
	written   bool // by an invocation that ran; a retry does not write again
}

// writeFiles checks each run's log (never a symbolic link or another user's
// file; made private), then writes each env file (0600, never replacing a
// file) from standard input, where each text ends with a line holding the
// separator; then it runs the rest of its arguments. Nothing is written
// and nothing run when a check or a write fails: "LFAIL TOKEN reason" on
// stderr names the spawn, exit 3.
const writeFiles = `umask 077; sep=$1; shift
bad=0 i=0
for a; do
  [ "$a" = -- ] && break
  i=$((i+1))
  case $((i % 3)) in
  1) tok=$a ;;
  0) log=$a
     if [ -L "$log" ]; then echo "LFAIL $tok refusing to use $log: it is a symbolic link (remove it)" >&2; bad=1
     elif [ -e "$log" ]; then
       if [ ! -O "$log" ]; then echo "LFAIL $tok refusing to use $log: it is owned by another user" >&2; bad=1
       else chmod go-rwx "$log" || { echo "LFAIL $tok cannot make $log private" >&2; bad=1; }; fi
     fi ;;
  esac
done
[ "$bad" = 0 ] || exit 3
i=0
for a; do
  [ "$a" = -- ] && break
  i=$((i+1))
  case $((i % 3)) in
  1) tok=$a ;;
  2) if ! (set -C; : > "$a") 2>/dev/null; then echo "LFAIL $tok cannot write $a" >&2; bad=1; break; fi
     # A write that fails (a full disk) is a failure: the loop's own
     # status is its last command's, not the writes'.
     w=0
     while IFS= read -r line; do [ "$line" = "$sep" ] && break; printf '%s\n' "$line" || w=1; done >> "$a" 2>/dev/null || w=1
     if [ "$w" = 1 ]; then echo "LFAIL $tok cannot write $a (is the disk full?)" >&2; bad=1; break; fi ;;
  esac
done
if [ "$bad" = 1 ]; then
  # Nothing stays: the spawns that go again write their files again.
  i=0
  for a; do
    [ "$a" = -- ] && break
    i=$((i+1)); [ $((i % 3)) = 2 ] && rm -f -- "$a"
  done
  exit 3
fi
while [ "$1" != -- ]; do shift; done
shift
exec "$@"
`

// writeThenRun is the command that writes the env files of reqs and then
// runs argv.
func writeThenRun(reqs []*batchReq, argv []string) executor.Command {
	sep := newToken()
	args := []string{"sh", "-c", writeFiles, "sh", sep}
	var stdin []byte
	for _, r := range reqs {
		args = append(args, r.token, r.file.path, r.file.log)
		stdin = append(stdin, r.file.text...)
		if len(r.file.text) > 0 && r.file.text[len(r.file.text)-1] != '\n' {
			stdin = append(stdin, '\n')
		}
		stdin = append(stdin, sep+"\n"...)
	}
	args = append(args, "--")
	return executor.Command{Args: append(args, argv...), Stdin: stdin}
}

// fileFailures reads the LFAIL lines of a writeThenRun that exited 3.
func fileFailures(res executor.Result) map[string]string {
	if res.ExitCode != 3 {
		return nil
	}
	failed := map[string]string{}
	for _, l := range strings.Split(string(res.Stderr), "\n") {
		rest, ok := strings.CutPrefix(l, "LFAIL ")
		if !ok {
			continue
		}
		tok, msg, _ := strings.Cut(rest, " ")
		failed[tok] = msg
	}
	return failed
}

// settleFileFailures fails the spawns whose files could not be made and
// queues the others again (nothing of that invocation ran).
func (m *Machine) settleFileFailures(reqs []*batchReq, failed map[string]string) {
	var again []*batchReq
	for _, r := range reqs {
		msg, ok := failed[r.token]
		if !ok {
			again = append(again, r)
			continue
		}
		if strings.HasPrefix(msg, "refusing") {
			r.err = &UnsafePathError{Machine: m.Machine(), Msg: msg}
		} else {
			r.err = fmt.Errorf("%s on %s", msg, m.Machine())
		}
		close(r.done)
	}
	if len(again) > 0 {
		b := &m.batcher
		b.mu.Lock()
		b.queue = append(again, b.queue...)
		b.mu.Unlock()
	}
}
