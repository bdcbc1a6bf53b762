package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Log lines written by the pane wrapper (see executor/tmux/scripts).
const (
	markerStart = "[launcher] starting "
	markerExit  = " exited with code "
)

// logSizeScript prints the size of $1 (0 when missing) and then, when $2 > 0,
// the last $2 lines before that size, so a follower can continue exactly
// where the printed history ends.
const logSizeScript = `f=$1 n=$2
if [ -f "$f" ]; then s=$(wc -c < "$f"); else s=0; fi
echo $s
if [ "$n" -gt 0 ] && [ "$s" -gt 0 ]; then head -c "$s" -- "$f" | tail -n "$n"; fi`

// logHead returns the current size of a log and its last n lines.
func logHead(ctx context.Context, m executor.Host, path string, n int) (int64, []string, error) {
	res, err := m.Run(ctx, executor.Command{Args: []string{"sh", "-c", logSizeScript, "sh", path, strconv.Itoa(n)}})
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

// follower streams a log file from a byte offset, line by line. It survives
// a broken link: it re-dials the machine and resumes at the first byte it has
// not delivered, so no line is lost or repeated.
type follower struct {
	dial   func(ctx context.Context) (executor.Host, error)
	path   string
	offset int64
	// onError is told about connection problems while it retries.
	onError func(error)
}

// run delivers complete lines to fn until ctx ends or fn returns false.
func (f *follower) run(ctx context.Context, fn func(line string) bool) error {
	var partial []byte
	for {
		h, err := f.dial(ctx)
		if err == nil {
			var s executor.Stream
			s, err = h.Stream(ctx, executor.Command{Args: []string{"tail", "-c", "+" + strconv.FormatInt(f.offset+1, 10), "-F", "--", f.path}})
			if err == nil {
				stop := false
				r := bufio.NewReaderSize(s, 64*1024)
				for !stop {
					chunk, rerr := r.ReadSlice('\n')
					if len(chunk) > 0 {
						if chunk[len(chunk)-1] == '\n' {
							line := string(append(partial, chunk[:len(chunk)-1]...))
							partial = partial[:0]
							f.offset += int64(len(line)) + 1
							if !fn(line) {
								stop = true
							}
						} else {
							partial = append(partial, chunk...)
						}
					}
					if rerr != nil && rerr != bufio.ErrBufferFull {
						if rerr != io.EOF {
							err = rerr
						} else {
							err = io.ErrUnexpectedEOF
						}
						break
					}
				}
				// Bytes of a partial line are re-read after a reconnect.
				partial = partial[:0]
				_ = s.Close()
				if stop {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && f.onError != nil {
			f.onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tailLog returns the last n lines of a log, waiting up to wait for the
// line that reports the exit of run tag (the log writer may lag the pane's
// death by a few milliseconds).
func tailLog(ctx context.Context, m executor.Host, path, tag string, n int, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		res, err := m.Run(ctx, executor.Command{Args: []string{"tail", "-n", strconv.Itoa(n + 1), "--", path}})
		if err != nil {
			return nil
		}
		lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
		if hasExitMarker(lines, tag) || time.Now().After(deadline) {
			var out []string
			for _, l := range lines {
				if strings.Contains(l, "(run "+tag+")") {
					continue
				}
				out = append(out, l)
			}
			if len(out) > n {
				out = out[len(out)-n:]
			}
			return out
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hasExitMarker(lines []string, tag string) bool {
	for _, l := range lines {
		if isExitMarker(l, tag) {
			return true
		}
	}
	return false
}

func isExitMarker(line, tag string) bool {
	return strings.Contains(line, "] [launcher] ") && strings.Contains(line, markerExit) &&
		(tag == "" || strings.HasSuffix(line, "(run "+tag+")"))
}

// isLauncherLine tells the wrapper's own lines from the process's output.
func isLauncherLine(line string) bool {
	i := strings.Index(line, "] ")
	return i >= 0 && strings.HasPrefix(line[i+2:], "[launcher] ")
}

// StripTimestamp removes the "[YYYY-MM-DD hh:mm:ss.mmm] " prefix of a log
// line.
func StripTimestamp(line string) string {
	if len(line) > 26 && line[0] == '[' && line[24] == ']' && line[25] == ' ' {
		return line[26:]
	}
	return line
}

func lastLines(b []byte, n int) []string {
	lines := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// dialer returns a function that gets the current Machine for name, so a
// follower picks up a re-dialled connection after a link drop.
func (e *Engine) dialer(name string) func(ctx context.Context) (executor.Host, error) {
	return func(ctx context.Context) (executor.Host, error) {
		m, _, err := e.machine(ctx, name)
		return m, err
	}
}
