package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
)

// The reference GUI's two powers beyond the config: ad-hoc commands on a
// machine and custom processes. Both only with serve --allow-exec (and a
// token, even on loopback); every use is an event on the stream.

const (
	defaultExecTimeout = 10 * time.Second
	maxExecTimeout     = 10 * time.Minute
	maxExecOutput      = 1 << 20 // bytes of stdout (and of stderr) answered
)

// execBody is the body of POST /api/v1/exec.
type execBody struct {
	// Machine to run on (one of the config's, or local); or Process: run
	// where that process runs (its machine and container, env and cwd).
	Machine string `json:"machine"`
	Process string `json:"process"`
	Cmd     string `json:"cmd"`
	Timeout string `json:"timeout"`
}

// ExecResult answers POST /api/v1/exec.
type ExecResult struct {
	Target   string `json:"target"`
	ExitCode int    `json:"exit_code"`
	TimedOut bool   `json:"timed_out"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Truncated: stdout or stderr was longer than 1 MiB (the end is cut).
	Truncated bool  `json:"truncated,omitempty"`
	Millis    int64 `json:"ms"`
}

// allowed refuses the exec routes unless serve was started with
// --allow-exec and requires a token.
func (s *Server) allowed(w http.ResponseWriter) bool {
	if !s.o.AllowExec || s.o.Token == "" {
		writeErr(w, http.StatusForbidden, "exec_disabled", "ad-hoc commands and custom processes are off: start serve with --allow-exec (a token is then required, even on loopback)")
		return false
	}
	return true
}

// announce puts a use of these powers on the event stream.
// data (a custom process's {"custom": "added"|"removed"}) tells clients
// to read the process list again.
func (s *Server) announce(r *http.Request, process, machine string, data any, format string, args ...any) {
	s.e.Bus().Publish(engine.Event{Kind: engine.Info, Process: process, Machine: machine, Severity: "warning", Data: data,
		Message: fmt.Sprintf(format, args...) + " (by " + clientOf(r) + ")"})
}

// clientOf names the client of a request for the record.
func clientOf(r *http.Request) string {
	if ua := r.UserAgent(); ua != "" {
		if len(ua) > 60 {
			ua = ua[:60] + "…"
		}
		return r.RemoteAddr + ", " + ua
	}
	return r.RemoteAddr
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w) {
		return
	}
	var b execBody
	if err := readBody(r, &b); err != nil {
		writeError(w, err)
		return
	}
	if strings.TrimSpace(b.Cmd) == "" {
		writeError(w, &badRequest{"cmd is empty: send {\"machine\": M, \"cmd\": \"...\"}"})
		return
	}
	timeout := defaultExecTimeout
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		if err != nil || d <= 0 || d > maxExecTimeout {
			writeError(w, &badRequest{fmt.Sprintf("timeout %q: write a duration from 1ms to %s, e.g. \"30s\"", b.Timeout, maxExecTimeout)})
			return
		}
		timeout = d
	}
	cfg := s.e.Config()
	target := b.Process
	switch {
	case b.Process != "" && b.Machine != "":
		writeError(w, &badRequest{"send machine or process, not both"})
		return
	case b.Process != "":
		if _, err := cfg.Lookup(b.Process); err != nil {
			writeError(w, err)
			return
		}
	default:
		target = b.Machine
		if target == "" {
			target = "local"
		}
		if !knownMachine(cfg, target) {
			writeError(w, &badRequest{fmt.Sprintf("machine %q: no process of the config runs there (use one of its machines, or local)", target)})
			return
		}
	}
	s.announce(r, b.Process, b.Machine, nil, "exec on %s: %s", target, b.Cmd)
	start := time.Now()
	// The command's own deadline ends it on its machine (and bounds the
	// wait for a machine that does not answer).
	res, err := s.e.ExecTarget(r.Context(), target, b.Cmd, timeout)
	if err != nil {
		s.announce(r, b.Process, b.Machine, nil, "exec on %s failed: %v", target, err)
		writeError(w, err)
		return
	}
	took := time.Since(start)
	// 124 is coreutils timeout's, which bounds the command on its machine.
	out := ExecResult{Target: target, ExitCode: res.ExitCode, TimedOut: res.ExitCode == 124 && took >= timeout, Millis: took.Milliseconds()}
	var cut1, cut2 bool
	out.Stdout, cut1 = clip(res.Stdout)
	out.Stderr, cut2 = clip(res.Stderr)
	out.Truncated = cut1 || cut2
	s.announce(r, b.Process, b.Machine, nil, "exec on %s: exit %d in %d ms%s", target, res.ExitCode, out.Millis, map[bool]string{true: " (timed out)"}[out.TimedOut])
	writeJSON(w, http.StatusOK, out)
}

// clip keeps the first maxExecOutput bytes of b as valid UTF-8.
func clip(b []byte) (string, bool) {
	cut := len(b) > maxExecOutput
	if cut {
		b = b[:maxExecOutput]
	}
	return strings.ToValidUTF8(string(b), string(utf8.RuneError)), cut
}

func knownMachine(cfg *config.Config, m string) bool {
	if config.IsLocal(m) {
		return true
	}
	for _, p := range cfg.Processes {
		if p.Machine == m {
			return true
		}
	}
	return false
}

func (s *Server) addCustom(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w) {
		return
	}
	var cu config.Custom
	if err := readBody(r, &cu); err != nil {
		writeError(w, err)
		return
	}
	p, err := s.e.AddProcess(cu)
	if err != nil {
		writeError(w, &badRequest{err.Error()})
		return
	}
	s.announce(r, p.Name, p.Machine, map[string]string{"custom": "added"}, "custom process added: %s", p.Cmd)
	sts, err := s.e.Status(r.Context(), []string{p.Name})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.entriesOf(sts)[0])
}

func (s *Server) removeCustom(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w) {
		return
	}
	p, err := s.process(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !p.Custom {
		writeError(w, &badRequest{fmt.Sprintf("%q is a process of the config, not a custom one: only custom processes are removed", p.Name)})
		return
	}
	if err := s.e.RemoveProcess(s.ctx, p.Name); err != nil {
		writeError(w, err)
		return
	}
	s.announce(r, p.Name, p.Machine, map[string]string{"custom": "removed"}, "custom process removed")
	writeJSON(w, http.StatusOK, map[string]any{"process": p.Name, "removed": true})
}

// StopCustom stops every custom process (serve stops them when it ends:
// no config describes them once it is gone).
func (s *Server) StopCustom(ctx context.Context) error {
	var names []string
	for _, p := range s.e.Config().Processes {
		if p.Custom {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return s.e.Kill(ctx, names, false, engine.KillOptions{})
}
