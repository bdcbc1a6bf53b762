package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// logHead returns the current size of a log and its last n lines.
func logHead(ctx context.Context, m executor.Machine, path string, n int) (int64, []string, error) {
	return m.LogHead(ctx, path, n)
}

// follower streams a log file from a byte offset, line by line. It survives
// a broken link: it re-dials the machine and resumes at the first byte it has
// not delivered, so no line is lost or repeated.
type follower struct {
	dial   func(ctx context.Context) (executor.Machine, error)
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
			s, err = h.FollowLog(ctx, f.path, f.offset)
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
					if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
						if !errors.Is(rerr, io.EOF) {
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
func tailLog(ctx context.Context, m executor.Machine, path, tag string, n int, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		_, lines, err := m.LogHead(ctx, path, n+1)
		if err != nil {
			return nil
		}
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
		if executor.IsExitLine(l, tag) {
			return true
		}
	}
	return false
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
func (e *Engine) dialer(name string) func(ctx context.Context) (executor.Machine, error) {
	return func(ctx context.Context) (executor.Machine, error) {
		m, _, err := e.machine(ctx, name)
		return m, err
	}
}

// Logs passes to fn the lines of name's log that q selects, from every
// file the writer rotated and every run, oldest first; the filtering
// happens on the process's machine. It is `launcher logs`.
func (e *Engine) Logs(ctx context.Context, name string, q executor.LogQuery, fn func(line string)) error {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return err
	}
	m, _, err := e.machine(ctx, p.Machine)
	if err != nil {
		return err
	}
	path, err := m.LogPath(ctx, p.Session, p.Name)
	if err != nil {
		return err
	}
	s, err := m.ReadLog(ctx, path, q)
	if err != nil {
		return err
	}
	defer s.Close()
	r := bufio.NewReaderSize(s, 64*1024)
	for {
		line, rerr := r.ReadString('\n')
		if line != "" {
			fn(strings.TrimSuffix(line, "\n"))
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return rerr
			}
			break
		}
	}
	if err := s.Wait(); err != nil {
		return fmt.Errorf("reading the log of %s on %s: %w", name, p.Machine, err)
	}
	return ctx.Err()
}

// RunInfo is one run of a process as its log tells it.
type RunInfo struct {
	Tag     string `json:"run"`
	Started string `json:"started"`
	// Ended is empty while the run goes on (or when its end was not
	// logged); ExitCode is then -1.
	Ended    string `json:"ended,omitempty"`
	ExitCode int    `json:"exit_code"`
}

// Runs lists the runs of name found in its log (across rotations), oldest
// first: what `launcher logs --run` takes.
func (e *Engine) Runs(ctx context.Context, name string) ([]RunInfo, error) {
	var runs []RunInfo
	at := map[string]int{}
	err := e.Logs(ctx, name, executor.LogQuery{Runs: true}, func(line string) {
		body := executor.StripTimestamp(line)
		stamp := strings.Trim(strings.TrimSuffix(line, body), "[] ")
		tag := executor.RunTag(line)
		if tag == "" {
			return
		}
		switch {
		case executor.IsStartLine(line, tag):
			at[tag] = len(runs)
			runs = append(runs, RunInfo{Tag: tag, Started: stamp, ExitCode: -1})
		case executor.IsExitLine(line, tag):
			k, ok := at[tag]
			if !ok {
				return
			}
			var code int
			if j := strings.LastIndex(body, " exited with code "); j >= 0 {
				fmt.Sscanf(body[j+len(" exited with code "):], "%d", &code)
			}
			runs[k].Ended, runs[k].ExitCode = stamp, code
		}
	})
	return runs, err
}
