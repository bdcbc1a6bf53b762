package tmux

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/docker"
)

// execWrapper runs a short command ($1) in a process group of its own and
// ends that group when the command ends (or is stopped): a ready check that
// leaves a child in the background (`sleep 5 &`) would otherwise leave one
// per try. Job control is on only to create the group, so bash prints no
// job notice.
const execWrapper = `set -m
bash -c "$1" & p=$!
set +m
trap 'kill -KILL -- -$p 2>/dev/null; exit 124' TERM INT HUP
wait "$p"; rc=$?
kill -KILL -- -"$p" 2>/dev/null
exit "$rc"`

// execCwd is a command's working directory on the machine, "~" expanded.
func (m *Machine) execCwd(ctx context.Context, cwd string) (string, error) {
	if strings.HasPrefix(cwd, "~") {
		if err := m.resolve(ctx); err != nil {
			return "", err
		}
	}
	return m.expandHome(cwd), nil
}

// Exec runs a short command: `bash -c` on the host, or `docker exec -i …
// bash -ic` in a container, bounded on the machine by coreutils timeout so a
// hung check cannot outlive its deadline even over SSH. A host that bounds
// and ends a process group itself (the local one) runs a check's bash alone.
func (m *Machine) Exec(ctx context.Context, spec executor.ExecSpec) (executor.Result, error) {
	if gr, ok := m.Host.(executor.GroupRunner); ok && spec.EndChildren && spec.Docker == "" {
		// The host bounds the command and ends its group itself: one
		// bash, no wrapper, no timeout(1).
		cwd, err := m.execCwd(ctx, spec.Cwd)
		if err != nil {
			return executor.Result{}, err
		}
		return gr.RunGroup(ctx, executor.Command{Args: []string{"bash", "-c", spec.Script}, Env: spec.Env, Dir: cwd}, spec.Timeout)
	}
	var argv []string
	if spec.Timeout > 0 {
		// The command bounds itself on its machine (over SSH closing the
		// channel does not stop it), with SIGTERM first so that the
		// wrapper ends what the command left behind.
		secs := spec.Timeout.Seconds()
		argv = append(argv, "timeout", "-k", "2", strconv.FormatFloat(secs, 'f', 3, 64))
	}
	if spec.Timeout > 0 {
		limit := spec.Timeout + 3*time.Second // the machine's timeout fires first
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	cwd, err := m.execCwd(ctx, spec.Cwd)
	if err != nil {
		return executor.Result{}, err
	}
	cmd := executor.Command{}
	if spec.Docker != "" {
		argv = append(argv, docker.ExecArgv(spec.Docker, docker.ExecOptions{Env: spec.Env, Cwd: cwd, Script: spec.Script})...)
		cmd.Env = spec.Env
	} else {
		if spec.EndChildren {
			argv = append(argv, "bash", "-c", execWrapper, "bash", spec.Script)
		} else {
			argv = append(argv, "bash", "-c", spec.Script)
		}
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
	ps, _, err := m.readPS(ctx, false)
	return ps, err
}

// ProcessesAndLoad is Processes with the machine's load average and CPU
// count, read by the same command (/proc/loadavg; the count from getconf).
func (m *Machine) ProcessesAndLoad(ctx context.Context) ([]executor.ProcessInfo, *executor.Load, error) {
	return m.readPS(ctx, true)
}

const psArgs = "pid=,ppid=,rss=,pcpu=,args="

func (m *Machine) readPS(ctx context.Context, load bool) ([]executor.ProcessInfo, *executor.Load, error) {
	cmd := executor.Command{Args: []string{"ps", "-e", "-o", psArgs}}
	if load {
		cmd.Args = []string{"sh", "-c", `printf 'LOAD %s %s\n' "$(cat /proc/loadavg 2>/dev/null)" "$(getconf _NPROCESSORS_ONLN 2>/dev/null)"; exec ps -e -o ` + psArgs}
	}
	res, err := m.Host.Run(ctx, cmd)
	if err != nil {
		return nil, nil, err
	}
	if res.ExitCode != 0 {
		return nil, nil, fmt.Errorf("ps on %s: %s", m.Machine(), strings.TrimSpace(string(res.Stderr)))
	}
	if !load {
		return ParsePS(res.Stdout), nil, nil
	}
	first, rest, _ := strings.Cut(string(res.Stdout), "\n")
	return ParsePS([]byte(rest)), parseLoad(first), nil
}

// parseLoad reads "LOAD 0.52 0.40 0.33 1/345 12345 2" (nil when the
// machine has no /proc/loadavg).
func parseLoad(line string) *executor.Load {
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "LOAD" {
		return nil
	}
	var l executor.Load
	var err error
	if l.One, err = strconv.ParseFloat(f[1], 64); err != nil {
		return nil
	}
	l.Five, _ = strconv.ParseFloat(f[2], 64)
	l.Fifteen, _ = strconv.ParseFloat(f[3], 64)
	if len(f) >= 7 {
		l.CPUs, _ = strconv.Atoi(f[6])
	}
	return &l
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
