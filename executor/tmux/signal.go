package tmux

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/robotlauncher/launcher/executor"
)

// Signal delivers sig to the process in w. SIGINT and SIGQUIT are sent as the
// keys C-c and C-\ into the pane (through `docker exec -it` they reach the
// container's terminal too); SIGTERM and SIGKILL go to the processes of the
// run inside the container first, then to every process of the pane's
// session (the pane's interactive bash included).
func (m *Machine) Signal(ctx context.Context, w executor.Window, sig executor.Signal, set executor.MarkUpdate) error {
	switch sig {
	case executor.SIGINT, executor.SIGQUIT:
		key := "C-c"
		if sig == executor.SIGQUIT {
			key = `C-\`
		}
		started, err := w.Begun, error(nil)
		if !started {
			started, err = m.commandStarted(ctx, w.Marks.Tag)
		}
		if err != nil {
			return err
		}
		if !started {
			if err := m.SetMarks(ctx, w.ID, set); err != nil {
				return err
			}
			return executor.ErrNotStarted
		}
		cmds := append(m.setCommands(w.ID, set), []string{"send-keys", "-t", w.ID, key})
		_, err = m.batch(ctx, cmds)
		return err
	case executor.SIGTERM, executor.SIGKILL:
		if err := m.SetMarks(ctx, w.ID, set); err != nil {
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

// commandStarted reports whether the pane of run tag has begun its
// command: its prologue empties the run's env file first thing (after
// catching SIGINT; the log writer removes it soon after), so while the file
// has its content the pane's shell is still reading the user's .bashrc,
// where a C-c is lost.
func (m *Machine) commandStarted(ctx context.Context, tag string) (bool, error) {
	if tag == "" {
		return true, nil
	}
	if err := m.resolve(ctx); err != nil {
		return false, err
	}
	runDir := strings.TrimRight(m.opts.StateDir, "/") + "/run"
	pattern := runDir + "/" + tag + "-*.env"
	if executor.IsLocal(m.Host) {
		found, err := filepath.Glob(pattern)
		if err != nil {
			return false, nil
		}
		for _, f := range found {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
				return false, nil
			}
		}
		return true, nil
	}
	return m.started.ask(ctx, tag, func(ctx context.Context, tags []string) (map[string]bool, error) {
		// One command for every stop under way on the machine (25 stops
		// are one round trip, not five waves of six).
		res, err := m.Host.Run(ctx, executor.Command{Args: append([]string{"sh", "-c",
			`d=$1; shift; for t; do for f in "$d/$t"-*.env; do [ -s "$f" ] && echo "$t"; break; done; done; exit 0`, "sh", runDir}, tags...)})
		if err != nil {
			return nil, err
		}
		if res.ExitCode != 0 {
			return nil, fmt.Errorf("cannot look for env files on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
		}
		waiting := map[string]bool{}
		for _, l := range strings.Fields(string(res.Stdout)) {
			waiting[l] = true
		}
		started := map[string]bool{}
		for _, t := range tags {
			started[t] = !waiting[t]
		}
		return started, nil
	})
}

// startedAsker coalesces the questions "has run TAG begun its command?" of
// concurrent stops into one command on the machine: whoever asks while one
// is under way rides in the next.
type startedAsker struct {
	mu      sync.Mutex
	queue   []*startedReq
	leading bool
}

type startedReq struct {
	tag     string
	started bool
	err     error
	done    chan struct{}
}

func (a *startedAsker) ask(ctx context.Context, tag string, run func(context.Context, []string) (map[string]bool, error)) (bool, error) {
	r := &startedReq{tag: tag, done: make(chan struct{})}
	a.mu.Lock()
	a.queue = append(a.queue, r)
	if !a.leading {
		a.leading = true
		go a.lead(context.WithoutCancel(ctx), run)
	}
	a.mu.Unlock()
	select {
	case <-r.done:
		return r.started, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (a *startedAsker) lead(ctx context.Context, run func(context.Context, []string) (map[string]bool, error)) {
	for {
		a.mu.Lock()
		reqs := a.queue
		a.queue = nil
		if len(reqs) == 0 {
			a.leading = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		tags := make([]string, 0, len(reqs))
		for _, r := range reqs {
			tags = append(tags, r.tag)
		}
		rctx, cancel := context.WithTimeout(ctx, batchTimeout)
		started, err := run(rctx, tags)
		cancel()
		for _, r := range reqs {
			r.started, r.err = started[r.tag], err
			close(r.done)
		}
	}
}

// taggedScript prints, NUL-separated, "/proc/PID/environ:VAR=value" for
// the launcher variables of every process that has them (one grep finds the
// processes, one reads their variables). Then the runs of concert_launcher:
// "concert:PID:ARGV" (arguments \x1f-separated) for each of its wrappers
// and `script … NAME.stdout` processes of this tmux server ($1, the -S
// socket, or tmux's default: their TMUX variable names it; those of another
// server, another user's or a test's, are not ours to count or stop), and
// when there are any, "ppid:PID:PPID" for every process, to find what they
// started.
const taggedScript = `files=$(grep -lzF LAUNCHER_TAG= /proc/[0-9]*/environ 2>/dev/null)
[ -z "$files" ] || grep -azH -E '^LAUNCHER_(TAG|PROCESS|SESSION|LOG)=' $files 2>/dev/null
c=$(grep -lzE '` + concertPattern + `' /proc/[0-9]*/cmdline 2>/dev/null)
[ -n "$c" ] || exit 0
sock=${1:-${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/default} n=0
for f in $c; do
  p=${f#/proc/}; p=${p%/cmdline}
  case $(tr '\000' '\n' < "/proc/$p/environ" 2>/dev/null | grep -m1 '^TMUX=') in
  "TMUX=$sock,"*) ;;
  *) continue ;;
  esac
  printf 'concert:%s:' "$p"; tr '\000' '\037' < "$f" 2>/dev/null; printf '\000'; n=1
done
[ $n = 1 ] || exit 0
for d in /proc/[0-9]*; do
  read -r st < "$d/stat" 2>/dev/null || continue
  st=${st##*) }; set -- $st; [ "$1" = Z ] || printf 'ppid:%s:%s\000' "${d#/proc/}" "$2"
done
exit 0`

// Tagged lists the processes of the machine that carry launcher's run
// variables (the pane's shell and everything it started, unless a
// process cleared its environment), and the processes of
// concert_launcher's runs.
func (m *Machine) Tagged(ctx context.Context) ([]executor.TaggedProcess, error) {
	if executor.IsLocal(m.Host) {
		return ParseTagged(taggedLocal(m.opts.Socket)), nil
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c", taggedScript, "sh", m.opts.Socket}})
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
	type root struct {
		pid          int
		name, output string
	}
	var roots []root
	children := map[int][]int{}
	for _, rec := range strings.Split(string(out), "\x00") {
		kind, rest, _ := strings.Cut(rec, ":")
		switch kind {
		case "concert":
			pidText, argv, _ := strings.Cut(rest, ":")
			pid, err := strconv.Atoi(pidText)
			if err != nil {
				continue
			}
			if name, output := concertRun(strings.Split(strings.TrimSuffix(argv, "\x1f"), "\x1f")); name != "" {
				roots = append(roots, root{pid, name, output})
			}
			continue
		case "ppid":
			a, b, _ := strings.Cut(rest, ":")
			pid, err1 := strconv.Atoi(a)
			ppid, err2 := strconv.Atoi(b)
			if err1 == nil && err2 == nil {
				children[ppid] = append(children[ppid], pid)
			}
			continue
		}
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
	// A concert_launcher run is its wrapper or `script` and everything
	// below them; the log of the `script` in a wrapper's tree is the
	// run's output.
	trees := make([][]int, len(roots))
	for i, r := range roots {
		trees[i] = []int{r.pid}
		for j := 0; j < len(trees[i]); j++ {
			trees[i] = append(trees[i], children[trees[i][j]]...)
		}
	}
	for i := range roots {
		for j, r2 := range roots {
			if roots[i].output == "" && r2.output != "" && r2.name == roots[i].name && slices.Contains(trees[i], r2.pid) {
				roots[i].output = roots[j].output
			}
		}
	}
	seen := map[int]bool{}
	for i, r := range roots {
		for _, pid := range trees[i] {
			if !seen[pid] {
				seen[pid] = true
				ps = append(ps, executor.TaggedProcess{PID: pid, Tag: executor.ConcertTag(r.name), Process: r.name,
					Foreign: executor.ConcertLauncher, Output: r.output})
			}
		}
	}
	return ps
}

// concertRun reads the process name (and log) of a concert_launcher run
// from a command line: its wrapper (`bash …/concert_launcher_wrapper.bash
// NAME CMD`) or its `script --append --flush --return --command … DIR/NAME.stdout`.
func concertRun(argv []string) (name, output string) {
	for i, a := range argv {
		if strings.HasSuffix(a, "concert_launcher_wrapper.bash") && i+1 < len(argv) && i <= 1 {
			return argv[i+1], ""
		}
	}
	if len(argv) >= 3 && path.Base(argv[0]) == "script" && slices.Contains(argv, "--append") {
		last := argv[len(argv)-1]
		if name, ok := strings.CutSuffix(path.Base(last), ".stdout"); ok && name != "" {
			return name, last
		}
	}
	return "", ""
}

// SignalTagged signals every process of the given runs on the machine.
// The processes of a concert_launcher run (executor.ConcertTag) carry no
// tag of ours: they are looked up again and signalled by pid.
func (m *Machine) SignalTagged(ctx context.Context, tags []string, sig executor.Signal) error {
	for _, tag := range tags {
		if tag == "" {
			continue
		}
		if strings.HasPrefix(tag, executor.ConcertLauncher+":") {
			if err := m.signalConcert(ctx, tag, sig); err != nil {
				return err
			}
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

// signalConcert signals the processes of concert_launcher's runs of tag.
func (m *Machine) signalConcert(ctx context.Context, tag string, sig executor.Signal) error {
	tagged, err := m.Tagged(ctx)
	if err != nil {
		return err
	}
	args := []string{"kill", "-s", string(sig)}
	for _, tp := range tagged {
		if tp.Tag == tag {
			args = append(args, strconv.Itoa(tp.PID))
		}
	}
	if len(args) == 3 {
		return nil
	}
	// A process that ended meanwhile makes kill fail: that is no error.
	_, err = m.Host.Run(ctx, executor.Command{Args: args})
	return err
}
