package executor

import (
	"fmt"
	"strings"
	"time"
)

// The log-line contract. Every line of a process log is timestamped
// ("[YYYY-MM-DD hh:mm:ss.mmm] " + text, see StripTimestamp). A machine frames
// the output of each run with two lines of its own, and the engine reads
// them to find where a run's output starts and that it ended:
//
//	[launcher] starting NAME (run TAG)
//	[launcher] NAME exited with code N (run TAG)
//
// The tmux machine's pane prologue writes them in shell (the conformance
// suite checks it writes exactly these); the fake machine writes them with
// StartLine and ExitLine.
const launcherPrefix = "[launcher] "

// StartLine is the line that opens the output of run tag of process.
func StartLine(process, tag string) string {
	return fmt.Sprintf("%sstarting %s (run %s)", launcherPrefix, process, tag)
}

// ExitLine is the line that closes it.
func ExitLine(process string, code int, tag string) string {
	return fmt.Sprintf("%s%s exited with code %d (run %s)", launcherPrefix, process, code, tag)
}

// StripTimestamp removes the "[YYYY-MM-DD hh:mm:ss.mmm] " prefix of a log
// line.
func StripTimestamp(line string) string {
	if len(line) >= 26 && line[0] == '[' && line[24] == ']' && line[25] == ' ' {
		return line[26:]
	}
	return line
}

// IsLauncherLine tells a machine's own lines from the process's output (in
// a timestamped log line).
func IsLauncherLine(line string) bool {
	return strings.HasPrefix(StripTimestamp(line), launcherPrefix)
}

// IsStartLine reports whether a timestamped log line opens a run (of tag,
// or of any run when tag is "").
func IsStartLine(line, tag string) bool {
	body := StripTimestamp(line)
	return strings.HasPrefix(body, launcherPrefix+"starting ") && (tag == "" || strings.HasSuffix(body, "(run "+tag+")"))
}

// IsExitLine reports whether a timestamped log line closes a run (of tag,
// or of any run when tag is "").
func IsExitLine(line, tag string) bool {
	body := StripTimestamp(line)
	return strings.HasPrefix(body, launcherPrefix) && strings.Contains(body, " exited with code ") &&
		(tag == "" || strings.HasSuffix(body, "(run "+tag+")"))
}

// RunTag is the tag a launcher line names ("… (run TAG)"), or "".
func RunTag(line string) string {
	body := StripTimestamp(line)
	i := strings.LastIndex(body, "(run ")
	if i < 0 || !strings.HasSuffix(body, ")") {
		return ""
	}
	return body[i+5 : len(body)-1]
}

// FilterLog applies q to the lines of a log (oldest first), as a machine's
// ReadLog does on the machine: stamps are compared in now's location.
func FilterLog(lines []string, q LogQuery, now time.Time) []string {
	cutoff := ""
	if q.Since > 0 {
		cutoff = now.Add(-q.Since.Truncate(time.Second)).Format("[2006-01-02 15:04:05")
	}
	var out []string
	on, cur := cutoff == "", ""
	for _, l := range lines {
		// The run a line belongs to is known from before the cutoff.
		if IsStartLine(l, "") {
			cur = RunTag(l)
		}
		if !on {
			if len(l) < 20 || l[:20] < cutoff {
				continue
			}
			on = true
		}
		if q.Runs {
			if IsStartLine(l, "") || IsExitLine(l, "") {
				out = append(out, l)
			}
			continue
		}
		if q.Run != "" && cur != q.Run {
			continue
		}
		out = append(out, l)
	}
	if q.Last > 0 && len(out) > q.Last {
		out = out[len(out)-q.Last:]
	}
	return out
}
