package tmux

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

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
		started, err := m.commandStarted(ctx, w.Marks.Tag)
		if err != nil {
			return err
		}
		if !started {
			if err := m.SetMarks(ctx, w.ID, set); err != nil {
				return err
			}
			return executor.ErrNotStarted
		}
		cmds := append(setCommands(w.ID, set), []string{"send-keys", "-t", w.ID, key})
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
// command: its prologue removes the run's env file first thing (after
// catching SIGINT), so while the file is there the pane's shell is still
// reading the user's .bashrc, where a C-c is lost.
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
		return err == nil && len(found) == 0, nil
	}
	res, err := m.Host.Run(ctx, executor.Command{Args: []string{"sh", "-c",
		`for f in "$1"/"$2"-*.env; do [ -e "$f" ] && exit 3; done; exit 0`, "sh", runDir, tag}})
	if err != nil {
		return false, err
	}
	return res.ExitCode != 3, nil
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
