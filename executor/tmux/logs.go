package tmux

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/shell"
)

// LogPath returns <log dir>/<session>/<name>.log on this machine.
func (m *Machine) LogPath(ctx context.Context, session, name string) (string, error) {
	if err := m.resolve(ctx); err != nil {
		return "", err
	}
	return strings.TrimRight(m.logDir, "/") + "/" + session + "/" + name + ".log", nil
}

// pipeCommand is the shell command tmux runs (with /bin/sh -c, on the
// machine) to write the pane's output to the log. tmux expands formats and
// strftime sequences in it, so it is escaped for that too; the one format
// left is #{pane_pid}, the pane's shell, which the writer tells when it has
// the run's exit line (tag) so the pane may end. A symbolic link planted
// where the log goes is refused (the log directory is checked to be the
// caller's; this closes the remaining gap).
func (m *Machine) pipeCommand(logPath, tag string) string {
	q := shell.Quote
	prog, script := "perl", m.scripts.path(perlWriter, "logwriter.pl")
	if m.scripts.writer != "perl" {
		prog, script = "bash", m.scripts.path(bashWriter, "logwriter.bash")
	}
	return escapeFormat("umask 077; [ -L "+q(logPath)+" ] && exit 1; exec "+prog+" "+q(script)+" "+q(tag)) +
		" #{pane_pid} " + escapeFormat(q(logPath)+" >>"+q(logPath))
}

// escapeFormat protects text from tmux format and strftime expansion.
func escapeFormat(s string) string {
	return strings.NewReplacer("#", "##", "%", "%%").Replace(s)
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
