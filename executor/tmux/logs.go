package tmux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

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
// caller's; this closes the remaining gap). envFile, when set, is the run's
// env file, which the writer removes once the run has started.
func (m *Machine) pipeCommand(logPath, tag string, rot executor.LogRotation, envFile string) string {
	q := shell.Quote
	prog, script := "perl", m.scripts.path(perlWriter, "logwriter.pl")
	if m.scripts.writer != "perl" {
		prog, script = "bash", m.scripts.path(bashWriter, "logwriter.bash")
	}
	return escapeFormat("umask 077; [ -L "+q(logPath)+" ] && exit 1; exec "+prog+" "+q(script)+" "+q(tag)) +
		" #{pane_pid} " + escapeFormat(q(logPath)+" "+strconv.FormatInt(max(rot.MaxSize, 0), 10)+" "+strconv.Itoa(max(rot.Keep, 0))+" "+q(envFile)+" >>"+q(logPath))
}

// escapeFormat protects text from tmux format and strftime expansion.
func escapeFormat(s string) string {
	return strings.NewReplacer("#", "##", "%", "%%").Replace(s)
}

// logHeadScript prints the size of $1 (0 when missing) and then, when
// $2 > 0, the last $2 lines before that size; when the log was rotated
// not long ago and has fewer lines, the last of the rotated $1.1 come
// first.
const logHeadScript = `f=$1 n=$2
if [ -f "$f" ]; then s=$(wc -c < "$f"); else s=0; fi
echo $s
[ "$n" -gt 0 ] || exit 0
c=$n
if [ "$s" -lt 1048576 ] && [ -f "$f.1" ]; then
  c=0
  [ "$s" -gt 0 ] && c=$(head -c "$s" -- "$f" | wc -l)
  [ "$c" -lt "$n" ] && tail -n $((n - c)) -- "$f.1"
fi
if [ "$s" -gt 0 ]; then head -c "$s" -- "$f" | tail -n "$n"; fi
exit 0`

// LogHead returns the size of a log and its last n lines before that size.
func (m *Machine) LogHead(ctx context.Context, path string, n int) (int64, []string, error) {
	if n == 0 && executor.IsLocal(m.Host) {
		// Only the size, here: what the script's `[ -f ]` and `wc -c`
		// say, without a shell (a one-shot asks it before it starts).
		fi, err := os.Stat(path)
		switch {
		case err == nil && fi.Mode().IsRegular():
			return fi.Size(), nil, nil
		case err == nil, errors.Is(err, fs.ErrNotExist):
			return 0, nil, nil
		}
	}
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

// followScript runs logfollow.pl ($1) on log $2 from byte $3, or where
// Perl is missing tail -F, which follows the name across a rotation but
// notices it only at its next poll (a file rotated twice in between is
// skipped). Nothing is installed first: a watch starts at once.
const followScript = `if command -v perl >/dev/null 2>&1; then exec perl -e "$1" -- "$2" "$3"; fi
f=$2 off=$3
s=0; [ -f "$f" ] && s=$(wc -c < "$f")
if [ "$s" -lt "$off" ] && [ -f "$f.1" ]; then
  s1=$(wc -c < "$f.1")
  if [ "$s1" -ge "$off" ]; then
    tail -c +$((off + 1)) -- "$f.1"
    off=0
  else
    off=$((off - s1))
  fi
fi
exec tail -c +$((off + 1)) -F -- "$f"`

// FollowLog streams a log from a byte offset on the machine, across
// rotations.
func (m *Machine) FollowLog(ctx context.Context, path string, offset int64) (executor.Stream, error) {
	return m.Host.Stream(ctx, executor.Command{Args: []string{"sh", "-c", followScript, "sh", perlFollower, path, strconv.FormatInt(offset, 10)}})
}

// readLogScript prints a log's rotated files and the log, oldest first,
// through one awk filter: lines stamped since the cutoff ($2 seconds ago,
// in the machine's local time as the stamps are), the lines of one run
// ($3: from its start line to the next run's), only the start and exit
// lines ($5 = runs), then the last $4 lines.
const readLogScript = `f=$1 since=$2 run=$3 n=$4 mode=$5
i=1
while [ -f "$f.$i" ]; do i=$((i + 1)); done
set --
while [ "$i" -gt 1 ]; do i=$((i - 1)); set -- "$@" "$f.$i"; done
[ -f "$f" ] && set -- "$@" "$f"
[ $# -gt 0 ] || exit 0
cutoff=
if [ "$since" -gt 0 ]; then cutoff=$(date -d "@$(( $(date +%s) - since ))" '+[%Y-%m-%d %H:%M:%S') || exit 1; fi
cat -- "$@" | awk -v cutoff="$cutoff" -v run="$run" -v mode="$mode" '
  /^\[[^]]*\] \[launcher\] starting .* \(run [^ )]*\)$/ { t = $NF; sub(/\)$/, "", t); cur = t; start = 1 }
  cutoff != "" && !on { if (substr($0, 1, 20) < cutoff) { start = 0; next }; on = 1 }
  start { start = 0; if (mode == "runs") { print; next } }
  mode == "runs" { if ($0 ~ /^\[[^]]*\] \[launcher\] .* exited with code -?[0-9]+ \(run [^ )]*\)$/) print; next }
  run != "" && cur != run { next }
  { print }
' | if [ "$n" -gt 0 ]; then tail -n "$n"; else cat; fi`

// ReadLog streams what q selects of a log and its rotated files.
func (m *Machine) ReadLog(ctx context.Context, path string, q executor.LogQuery) (executor.Stream, error) {
	mode := "lines"
	if q.Runs {
		mode = "runs"
	}
	since := int64(0)
	if q.Since > 0 {
		since = max(int64(q.Since/time.Second), 1)
	}
	return m.Host.Stream(ctx, executor.Command{Args: []string{"sh", "-c", readLogScript, "sh", path,
		strconv.FormatInt(since, 10), q.Run, strconv.Itoa(max(q.Last, 0)), mode}})
}
