package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/lua/binding"
)

// ---- the reference GUI server's routes

// legacyStatus is a process's entry in /process/list's "status": the
// fields of the reference tool's status dict, plus launcher's state.
type legacyStatus struct {
	PID  any  `json:"pid"` // an int, or "-" when not running
	Dead bool `json:"dead"`
	// ExitStatus is what the reference GUI reads to tell "Stopped" (0)
	// from "Killed": 0 for every clean or requested stop (a shell loop
	// ends 1 on SIGINT), 255 (ssh's "unreachable") for a process whose
	// machine is lost, which must not look stopped. ExitCode is the real one.
	ExitStatus  *int   `json:"exitstatus"`
	ExitCode    *int   `json:"exit_code"`
	RunPending  bool   `json:"run_pending"`
	KillPending bool   `json:"kill_pending"`
	State       string `json:"state"`
	Machine     string `json:"machine"`
	Session     string `json:"session"`
	Error       string `json:"error,omitempty"`
}

func (s *Server) compatList(w http.ResponseWriter, r *http.Request) {
	sts, err := s.e.Status(r.Context(), nil)
	if err != nil {
		writeError(w, err)
		return
	}
	procs := make([]ConfigView, 0, len(s.e.Config().Processes))
	for _, p := range s.e.Config().Processes {
		procs = append(procs, configView(p))
	}
	status := map[string]legacyStatus{}
	for _, st := range sts {
		status[st.Process] = legacyOf(st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"processes": procs, "status": status})
}

// legacyOf is a status row as the reference GUI reads it.
func legacyOf(st engine.Status) legacyStatus {
	ls := legacyStatus{PID: "-", State: string(st.State), Machine: st.Machine, Session: st.Session, Error: st.Error,
		ExitStatus: st.ExitCode, ExitCode: st.ExitCode, RunPending: st.State == engine.StateStarting, KillPending: st.State == engine.StateStopping}
	if st.PID != nil {
		ls.PID = *st.PID
	}
	ls.Dead = st.Window != nil && st.Window.Dead
	switch st.State {
	case engine.StateStopped:
		if ls.Dead {
			zero := 0
			ls.ExitStatus = &zero
		}
	case engine.StateUnavailable:
		lost := 255
		ls.Dead, ls.ExitStatus = true, &lost
	}
	return ls
}

func (s *Server) compatCommand(w http.ResponseWriter, r *http.Request) {
	p, err := s.process(r)
	if err != nil {
		status, _ := classify(err)
		writeJSON(w, status, map[string]any{"success": false, "error": err.Error()})
		return
	}
	var body struct {
		Variants []string `json:"variants"`
	}
	var opErr error
	switch r.PathValue("command") {
	case "start":
		// As the reference server: only "variants" is read, other fields
		// a GUI sends are ignored.
		if opErr = decodeBody(r, &body, false); opErr == nil {
			opErr = s.runOp(r.Context(), "start", p.Name, true, func(ctx context.Context) error {
				return s.e.Start(ctx, []string{p.Name}, config.Request{Variants: body.Variants})
			})
		}
	case "stop":
		opErr = s.runOp(r.Context(), "stop", p.Name, true, func(ctx context.Context) error {
			return s.e.Kill(ctx, []string{p.Name}, false, engine.KillOptions{})
		})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "error": "commands are start and stop"})
		return
	}
	if opErr != nil {
		status, _ := classify(opErr)
		writeJSON(w, status, map[string]any{"success": false, "error": opErr.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

// ---- API v1: reading

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	cfg := s.e.Config()
	machines := []string{}
	seen := map[string]bool{}
	for _, p := range cfg.Processes {
		if !seen[p.Machine] {
			seen[p.Machine] = true
			machines = append(machines, p.Machine)
		}
	}
	// The params a start may override, with their values in the config
	// (in file order).
	params := make([]map[string]string, 0, len(cfg.Params))
	for _, p := range cfg.Params {
		params = append(params, map[string]string{"name": p.Name, "value": p.Value})
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": s.o.Version, "config": cfg.File, "session": cfg.Session,
		"sessions": cfg.Sessions(), "machines": machines, "params": params, "stream_clients": s.hub.clientCount(),
		"allow_exec": s.o.AllowExec && s.o.Token != ""})
}

// ProcessEntry is one process in the API: its state, and what the config
// says of it under "config".
type ProcessEntry struct {
	ProcessView
	Config ConfigView `json:"config"`
}

func (s *Server) entries(ctx context.Context, names []string) ([]ProcessEntry, error) {
	sts, err := s.e.Status(ctx, names)
	if err != nil {
		return nil, err
	}
	return s.entriesOf(sts), nil
}

func (s *Server) entriesOf(sts []engine.Status) []ProcessEntry {
	out := make([]ProcessEntry, 0, len(sts))
	for _, st := range sts {
		out = append(out, ProcessEntry{ProcessView: viewOf(st), Config: configView(s.e.Config().Process(st.Process))})
	}
	return out
}

// list answers from the monitor's view while it is fresh (one poll old at
// most, and taken after this engine's last operation ended: tmux rings the
// monitor at every change a launcher makes); otherwise it lists the
// machines.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	sts, ok := s.e.Watched(s.o.MonitorEvery + 50*time.Millisecond)
	if !ok || r.URL.Query().Get("fresh") == "1" {
		var err error
		if sts, err = s.e.Status(r.Context(), nil); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"processes": s.entriesOf(sts)})
}

func (s *Server) one(w http.ResponseWriter, r *http.Request) {
	p, err := s.process(r)
	if err != nil {
		writeError(w, err)
		return
	}
	es, err := s.entries(r.Context(), []string{p.Name})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, es[0])
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := q["process"]
	if len(names) == 0 {
		writeErr(w, http.StatusBadRequest, "bad_request", "name the processes: ?process=NAME (repeatable), with &variant=CHOICE and &param=KEY:=VALUE")
		return
	}
	req, err := requestOf(q["param"], q["variant"])
	if err != nil {
		writeError(w, err)
		return
	}
	plan, err := s.e.Config().Resolve(names, req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

// requestOf reads params (KEY:=VALUE, as on the CLI) and variants.
func requestOf(params, variants []string) (config.Request, error) {
	req := config.Request{Params: map[string]string{}, Variants: variants}
	for _, p := range params {
		k, v, ok := strings.Cut(p, ":=")
		if !ok || k == "" {
			return req, &badRequest{fmt.Sprintf("param %q: write KEY:=VALUE", p)}
		}
		req.Params[k] = v
	}
	return req, nil
}

func (s *Server) pstree(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["process"]
	for _, n := range names {
		if _, err := s.e.Config().Lookup(n); err != nil {
			writeError(w, err)
			return
		}
	}
	trees, loads, err := s.e.TreesAndLoads(r.Context(), names)
	if err != nil {
		writeError(w, err)
		return
	}
	if trees == nil {
		trees = []engine.Tree{}
	}
	if loads == nil {
		loads = []engine.MachineLoad{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"trees": trees, "machines": loads})
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	if s.o.Validate == nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "config": s.e.Config().File})
		return
	}
	if err := s.o.Validate(); err != nil {
		_, code := classify(err)
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "config": s.e.Config().File,
			"error": map[string]string{"code": code, "message": err.Error()}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "config": s.e.Config().File})
}

// logRequest reads the process and ?lines= (default 100) of the log
// routes; ok is false when it answered with the error.
func (s *Server) logRequest(w http.ResponseWriter, r *http.Request) (p *config.Process, n int, ok bool) {
	p, err := s.process(r)
	if err == nil {
		n, err = lineCount(r.URL.Query().Get("lines"), 100)
	}
	if err != nil {
		writeError(w, err)
		return nil, 0, false
	}
	return p, n, true
}

func (s *Server) logTail(w http.ResponseWriter, r *http.Request) {
	p, n, ok := s.logRequest(w, r)
	if !ok {
		return
	}
	lines, err := s.e.LogTail(r.Context(), p.Name, n)
	if err != nil {
		writeError(w, err)
		return
	}
	if lines == nil {
		lines = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"process": p.Name, "lines": lines})
}

func lineCount(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 100000 {
		return 0, &badRequest{"lines must be a number from 0 to 100000"}
	}
	return n, nil
}

// ---- API v1: operations

// opBody is the body of start, stop and restart.
type opBody struct {
	Params   map[string]string `json:"params"`
	Variants []string          `json:"variants"`
	// Timeout bounds the operation ("30s"); empty: none.
	Timeout string `json:"timeout"`
	Force   bool   `json:"force"`
}

// RequestEvent ends an operation on the event stream: the steps before it
// carry the same Request label.
type RequestEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"event"` // "request"
	Request string    `json:"request"`
	Op      string    `json:"op"`
	Process string    `json:"process,omitempty"`
	OK      bool      `json:"ok"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// runOp runs an operation under the server's context with a request label.
// With wait it returns the operation's error; without, it returns at once
// (the end comes on the stream as a RequestEvent).
func (s *Server) runOp(reqCtx context.Context, op, process string, wait bool, fn func(ctx context.Context) error) error {
	_, err := s.launch(reqCtx, op, process, 0, wait, fn)
	return err
}

func (s *Server) launch(reqCtx context.Context, op, process string, timeout time.Duration, wait bool, fn func(ctx context.Context) error) (string, error) {
	id := "r" + strconv.FormatUint(s.seq.Add(1), 10)
	ctx := engine.WithRequest(s.ctx, id)
	ctx, cancel := context.WithCancel(ctx)
	if timeout > 0 {
		// Bounds the waits, not the acts: a timeout never leaves a restart
		// half-made, nor fails a process the request did not wait for.
		ctx = engine.WithWaitDeadline(ctx, time.Now().Add(timeout))
	}
	done := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		err := fn(ctx)
		ev := RequestEvent{Time: time.Now(), Kind: "request", Request: id, Op: op, Process: process, OK: err == nil}
		if err != nil {
			_, code := classify(err)
			ev.Error = &struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			}{code, err.Error()}
			fmt.Fprintf(s.o.Log, "launcher serve: %s %s (%s): %v\n", op, process, id, err)
		}
		// After every event of the operation, so a client that waits for
		// this one has seen its steps.
		s.e.Bus().Flush()
		s.hub.publish(ev)
		done <- err
	}()
	if !wait {
		return id, nil
	}
	select {
	case err := <-done:
		return id, err
	case <-reqCtx.Done():
		return id, reqCtx.Err()
	}
}

// operate is the common part of start, stop and restart: decode the body,
// check everything that can be checked before anything runs, then run.
func (s *Server) operate(w http.ResponseWriter, r *http.Request, op string, check func(p *config.Process, b opBody) error, fn func(ctx context.Context, p *config.Process, b opBody) error) {
	p, err := s.process(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var b opBody
	if err := readBody(r, &b); err != nil {
		writeError(w, err)
		return
	}
	var timeout time.Duration
	if b.Timeout != "" {
		if timeout, err = time.ParseDuration(b.Timeout); err != nil || timeout <= 0 {
			writeError(w, &badRequest{fmt.Sprintf("timeout %q: write a duration such as 30s", b.Timeout)})
			return
		}
	}
	if check != nil {
		if err := check(p, b); err != nil {
			writeError(w, err)
			return
		}
	}
	wait := r.URL.Query().Get("wait")
	if wait != "" && wait != "ready" && wait != "done" {
		writeError(w, &badRequest{"wait is ready (start, restart) or done (stop)"})
		return
	}
	id, err := s.launch(r.Context(), op, p.Name, timeout, wait != "", func(ctx context.Context) error { return fn(ctx, p, b) })
	if wait == "" {
		writeJSON(w, http.StatusAccepted, map[string]any{"request": id, "op": op, "process": p.Name})
		return
	}
	if err != nil {
		status, code := classify(err)
		var e apiError
		e.Error.Code, e.Error.Message = code, err.Error()
		writeJSON(w, status, map[string]any{"request": id, "error": e.Error})
		return
	}
	es, err := s.entries(r.Context(), []string{p.Name})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "op": op, "process": p.Name, "ok": true, "status": es[0].ProcessView})
}

// resolvable checks a start's variants and params before it runs: a bad
// one is a 400 and nothing starts.
func (s *Server) resolvable(p *config.Process, b opBody) error {
	_, err := s.e.Config().Resolve([]string{p.Name}, config.Request{Params: b.Params, Variants: b.Variants})
	return err
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	s.operate(w, r, "start", s.resolvable, func(ctx context.Context, p *config.Process, b opBody) error {
		return s.e.Start(ctx, []string{p.Name}, config.Request{Params: b.Params, Variants: b.Variants})
	})
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	s.operate(w, r, "stop", nil, func(ctx context.Context, p *config.Process, b opBody) error {
		return s.e.Kill(ctx, []string{p.Name}, false, engine.KillOptions{Force: b.Force})
	})
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	s.operate(w, r, "restart", s.resolvable, func(ctx context.Context, p *config.Process, b opBody) error {
		return s.e.Restart(ctx, p.Name, config.Request{Params: b.Params, Variants: b.Variants}, engine.KillOptions{Force: b.Force})
	})
}

func (s *Server) stopAll(w http.ResponseWriter, r *http.Request) {
	var b opBody
	if err := readBody(r, &b); err != nil {
		writeError(w, err)
		return
	}
	wait := r.URL.Query().Get("wait") != ""
	id, err := s.launch(r.Context(), "stop_all", "", 0, wait, func(ctx context.Context) error {
		return s.e.Kill(ctx, nil, true, engine.KillOptions{Force: b.Force})
	})
	switch {
	case !wait:
		writeJSON(w, http.StatusAccepted, map[string]any{"request": id, "op": "stop_all"})
	case err != nil:
		writeError(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"request": id, "op": "stop_all", "ok": true})
	}
}

// ---- plugin routes

func (s *Server) luaRoute(rt *binding.Route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := binding.RouteRequest{Method: r.Method, Path: r.URL.Path, Query: map[string]string{}}
		for k, v := range r.URL.Query() {
			req.Query[k] = v[0]
		}
		if r.Method != http.MethodGet {
			var body any
			if err := readBody(r, &body); err != nil {
				writeError(w, err)
				return
			}
			req.Body = body
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		v, err := s.o.Lua.CallRoute(ctx, rt, req)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				writeErr(w, http.StatusGatewayTimeout, "timeout", "the plugin's route did not answer within a minute")
				return
			}
			writeErr(w, http.StatusInternalServerError, "plugin_error", err.Error())
			return
		}
		status := v.Status
		if status == 0 {
			status = http.StatusOK
		}
		for k, val := range v.Headers {
			w.Header().Set(k, val)
		}
		if status == http.StatusNoContent || status == http.StatusNotModified {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v.Body)
	}
}
