package binding

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor/shell"
	"github.com/robotlauncher/launcher/lua/host"
	"github.com/robotlauncher/launcher/stdlib"
)

// Functions is the registration table of the launcher module: every name
// here is documented in stdlib/types/launcher.lua (a test checks both
// ways). Names starting with "__" are the Go primitives behind waiting
// shims and are not part of the API.
var Functions = []string{
	"start", "kill", "kill_all", "restart", "status", "wait_ready", "watch", "exec",
	"on", "ready_check", "check", "command", "route", "sleep", "supervise", "shell_quote", "run_log",
	"set_drain_timeout", "after", "every", "spawn", "emit", "group",
}

// Events are the event names launcher.on accepts ("user": launcher.emit's).
var Events = []string{"starting", "started", "ready", "failed", "exited", "stopping", "stopped", "output", "host_lost", "host_back", "restarted", "user"}

func (h *Host) loader(L *lua.LState) int {
	if h.module != nil {
		L.Push(h.module)
		return 1
	}
	m := L.NewTable()
	async := func(name string, prim lua.LGFunction) {
		m.RawSetString(name, host.AsyncFunc(L, prim, "launcher."+name))
	}
	async("start", h.start)
	async("kill", h.kill)
	async("kill_all", h.killAll)
	async("restart", h.restart)
	async("status", h.status)
	async("wait_ready", h.waitReady)
	async("exec", h.exec)
	async("sleep", h.sleep)
	async("supervise", h.supervise)
	async("run_log", h.runLog)
	L.SetFuncs(m, map[string]lua.LGFunction{
		"watch":             h.watch,
		"on":                h.on,
		"ready_check":       h.readyCheck,
		"check":             h.check,
		"command":           h.command,
		"route":             h.route,
		"shell_quote":       func(L *lua.LState) int { L.Push(lua.LString(shell.Quote(host.Str(L, 1)))); return 1 },
		"set_drain_timeout": h.setDrainTimeout,
		"after":             h.after,
		"every":             h.everyFn,
		"spawn":             h.spawn,
		"emit":              h.emit,
		"group":             h.group,
	})
	m.RawSetString("log", stdlib.LogTable(L, h.opts.Log))
	m.RawSetString("args", host.ToLua(L, h.args))
	m.RawSetString("config", host.ReadOnly(L, h.configView(L), false))
	h.module = m
	L.Push(m)
	return 1
}

// configView is launcher.config: the session, params and processes.
func (h *Host) configView(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("session", lua.LString(h.cfg.Session))
	t.RawSetString("file", lua.LString(h.cfg.File))
	params := L.NewTable()
	for _, p := range h.cfg.Params {
		params.RawSetString(p.Name, lua.LString(p.Value))
	}
	t.RawSetString("params", host.ReadOnly(L, params, false))
	procs := L.NewTable()
	for _, p := range h.cfg.Processes {
		pt := L.NewTable()
		pt.RawSetString("name", lua.LString(p.Name))
		pt.RawSetString("cmd", lua.LString(p.Cmd))
		pt.RawSetString("machine", lua.LString(p.Machine))
		pt.RawSetString("session", lua.LString(p.Session))
		pt.RawSetString("docker", lua.LString(p.Docker))
		pt.RawSetString("persistent", lua.LBool(p.Persistent))
		pt.RawSetString("depends", host.ReadOnly(L, host.ToLua(L, append([]string{}, p.Depends...)).(*lua.LTable), true))
		env := L.NewTable()
		for _, e := range p.Env {
			env.RawSetString(e.Name, lua.LString(e.Value))
		}
		pt.RawSetString("env", host.ReadOnly(L, env, false))
		if p.Cwd != "" {
			pt.RawSetString("cwd", lua.LString(p.Cwd))
		}
		if rc := p.ReadyCheck; rc != nil {
			rt := L.NewTable()
			if rc.Kind != "" {
				rt.RawSetString("check", lua.LString(rc.Kind))
				for _, o := range rc.Options {
					rt.RawSetString(o.Name, host.ToLua(L, o.Value))
				}
			} else {
				rt.RawSetString("cmd", lua.LString(rc.Cmd))
			}
			pt.RawSetString("ready_check", host.ReadOnly(L, rt, false))
		}
		for k, d := range map[string]time.Duration{"ready_timeout": p.ReadyTimeout, "ready_period": p.ReadyPeriod, "stop_timeout": p.StopTimeout} {
			if d > 0 {
				pt.RawSetString(k, lua.LNumber(d.Seconds()))
			}
		}
		variants := L.NewTable()
		for _, v := range p.Variants {
			vt := L.NewTable()
			vt.RawSetString("name", lua.LString(v.Name))
			vt.RawSetString("group", lua.LBool(v.Group))
			choices := L.NewTable()
			for _, c := range v.Choices {
				choices.Append(lua.LString(c.Name))
			}
			vt.RawSetString("choices", host.ReadOnly(L, choices, true))
			variants.Append(host.ReadOnly(L, vt, false))
		}
		pt.RawSetString("variants", host.ReadOnly(L, variants, true))
		procs.RawSetString(p.Name, host.ReadOnly(L, pt, false))
	}
	t.RawSetString("processes", host.ReadOnly(L, procs, false))
	return t
}

func (h *Host) process(L *lua.LState, n int) *config.Process {
	name := host.Str(L, n)
	p, err := h.cfg.Lookup(name)
	if err != nil {
		host.ArgError(L, n, err.Error())
	}
	return p
}

func (h *Host) request(L *lua.LState, o *lua.LTable) config.Request {
	req := config.Request{Variants: host.OptStrings(L, o, "variants")}
	if pt, ok := o.RawGetString("params").(*lua.LTable); ok {
		req.Params = map[string]string{}
		pt.ForEach(func(k, v lua.LValue) { req.Params[k.String()] = v.String() })
	} else if o.RawGetString("params") != lua.LNil {
		host.Raise(L, "option params must be a table")
	}
	return req
}

// timed bounds the waits of an operation by a timeout option (its acts, a
// stop or a spawn that began, finish: see engine.WithWaitDeadline).
func timed(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if d > 0 {
		ctx = engine.WithWaitDeadline(ctx, time.Now().Add(d))
	}
	return ctx, cancel
}

// result turns an operation's error into true | nil, err.
func result(ctx context.Context, err error) host.Converter {
	if err == nil {
		return host.Values(true)
	}
	if ctx.Err() != nil {
		return host.Fail(host.Waiter(ctx, ctx.Err()))
	}
	return host.Fail(err.Error())
}

func (h *Host) start(L *lua.LState) int {
	// One name, or a list started at once (independent ones concurrently).
	var names []string
	if t, ok := L.Get(1).(*lua.LTable); ok {
		for i := 1; i <= t.Len(); i++ {
			n, ok := t.RawGetInt(i).(lua.LString)
			if !ok {
				host.ArgError(L, 1, "a list of process names holds only strings")
			}
			if _, err := h.cfg.Lookup(string(n)); err != nil {
				host.ArgError(L, 1, err.Error())
			}
			names = append(names, string(n))
		}
		if len(names) == 0 {
			host.ArgError(L, 1, "an empty list of processes")
		}
	} else {
		names = []string{h.process(L, 1).Name}
	}
	o := host.CheckOptions(L, 2, "params", "variants", "timeout", "deps", "rerun")
	req := h.request(L, o)
	timeout := host.OptDuration(L, o, "timeout")
	opts := engine.StartOptions{NoDeps: o.RawGetString("deps") == lua.LFalse, Done: map[string]bool{}}
	if o.RawGetString("rerun") != lua.LTrue {
		h.mu.Lock()
		for n := range h.doneOneShots {
			opts.Done[n] = true
		}
		h.mu.Unlock()
	}
	plan, err := h.cfg.Resolve(names, req)
	if err != nil {
		// Bad variants or params are data errors: nil, err.
		L.Push(h.rt.Async(L, func(context.Context) host.Converter { return host.Fail(err.Error()) }))
		return 1
	}
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		ctx, cancel := timed(ctx, timeout)
		defer cancel()
		err := h.e.StartPlanWith(ctx, plan, opts)
		if err == nil {
			// Every one-shot of the plan succeeded: a later start in this
			// script does not run them again (homing the robot once).
			h.mu.Lock()
			for _, r := range plan.Processes {
				if !r.Persistent && (!opts.NoDeps || contains(names, r.Name)) {
					h.doneOneShots[r.Name] = true
				}
			}
			h.mu.Unlock()
		}
		return result(ctx, err)
	}))
	return 1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (h *Host) kill(L *lua.LState) int {
	p := h.process(L, 1)
	o := host.CheckOptions(L, 2, "force", "timeout")
	force, timeout := host.OptBool(L, o, "force"), host.OptDuration(L, o, "timeout")
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		ctx, cancel := timed(ctx, timeout)
		defer cancel()
		return result(ctx, h.e.Kill(ctx, []string{p.Name}, false, engine.KillOptions{Force: force}))
	}))
	return 1
}

func (h *Host) killAll(L *lua.LState) int {
	o := host.CheckOptions(L, 1, "force", "timeout")
	force, timeout := host.OptBool(L, o, "force"), host.OptDuration(L, o, "timeout")
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		ctx, cancel := timed(ctx, timeout)
		defer cancel()
		return result(ctx, h.e.Kill(ctx, nil, true, engine.KillOptions{Force: force}))
	}))
	return 1
}

func (h *Host) restart(L *lua.LState) int {
	p := h.process(L, 1)
	o := host.CheckOptions(L, 2, "params", "variants", "force", "timeout")
	req := h.request(L, o)
	force, timeout := host.OptBool(L, o, "force"), host.OptDuration(L, o, "timeout")
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		ctx, cancel := timed(ctx, timeout)
		defer cancel()
		return result(ctx, h.e.Restart(ctx, p.Name, req, engine.KillOptions{Force: force}))
	}))
	return 1
}

func statusTable(st engine.Status) map[string]any {
	t := map[string]any{"process": st.Process, "session": st.Session, "machine": st.Machine,
		"state": string(st.State), "pid": st.PID, "exit_code": st.ExitCode, "restarts": st.Restarts}
	if st.Error != "" {
		t["error"] = st.Error // nil when there is none
	}
	if !st.Started.IsZero() {
		// By the machine's clock: a script's time.now() may be off it.
		t["age"] = st.Age.Seconds()
	}
	if st.Restarts > 0 {
		t["last_restart"] = float64(st.LastRestart.UnixMilli()) / 1000
		t["last_restart_exit_code"] = st.LastExit
	}
	if st.ConfigChanged {
		// launcher.restart(name, {variants = run_variants, params =
		// run_params}) applies the config to this run.
		t["config_changed"] = true
	}
	if len(st.Request.Variants) > 0 {
		t["run_variants"] = st.Request.Variants
	}
	if len(st.Request.Params) > 0 {
		t["run_params"] = st.Request.Params
	}
	return t
}

func (h *Host) status(L *lua.LState) int {
	var names []string
	if L.GetTop() >= 1 && L.Get(1) != lua.LNil {
		names = []string{h.process(L, 1).Name}
	}
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		sts, err := h.e.Status(ctx, names)
		if err != nil {
			return host.Fail(err.Error())
		}
		if names != nil {
			return host.Values(statusTable(sts[0]))
		}
		list := make([]any, len(sts))
		for i, st := range sts {
			list[i] = statusTable(st)
		}
		return host.Values(list)
	}))
	return 1
}

func (h *Host) waitReady(L *lua.LState) int {
	p := h.process(L, 1)
	o := host.CheckOptions(L, 2, "timeout")
	timeout := host.OptDuration(L, o, "timeout")
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		ctx, cancel := timed(ctx, timeout)
		defer cancel()
		st, err := h.e.WaitReady(ctx, p.Name)
		switch {
		case err != nil:
			return host.Fail(host.Waiter(ctx, err))
		case st == engine.StateReady:
			return host.Values(true)
		case st == engine.StateConflict:
			return host.Fail("conflict")
		}
		return host.Fail("exited")
	}))
	return 1
}

func (h *Host) exec(L *lua.LState) int {
	target := host.Str(L, 1)
	script := host.Str(L, 2)
	o := host.CheckOptions(L, 3, "timeout")
	timeout := host.OptDuration(L, o, "timeout")
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		res, err := h.e.ExecTarget(ctx, target, script, timeout)
		if err != nil {
			return host.Fail(host.Waiter(ctx, err))
		}
		return host.Values(res.ExitCode, string(res.Stdout), string(res.Stderr))
	}))
	return 1
}

func (h *Host) runLog(L *lua.LState) int {
	p := h.process(L, 1)
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		text, err := h.e.RunLog(ctx, p.Name, 1<<20)
		if err != nil {
			return host.Fail(err.Error())
		}
		return host.Values(text)
	}))
	return 1
}

func (h *Host) sleep(L *lua.LState) int {
	d := time.Duration(host.Num(L, 1) * float64(time.Second))
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		return wait(ctx, d)
	}))
	return 1
}

// wait returns true after d, or (nil, "cancelled") when ctx ends first.
func wait(ctx context.Context, d time.Duration) host.Converter {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return host.Values(true)
	case <-ctx.Done():
		return host.Fail("cancelled")
	}
}

// supervise keeps the script alive (handlers keep firing, exits are
// noticed) until Ctrl-C (nil, "cancelled") or the timeout (true).
func (h *Host) supervise(L *lua.LState) int {
	o := host.CheckOptions(L, 1, "timeout")
	timeout := host.OptDuration(L, o, "timeout")
	h.e.MonitorOnce(h.ctx, h.opts.MonitorEvery)
	h.ensureSubscribed()
	L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
		if timeout == 0 { // no timeout: until Ctrl-C
			<-ctx.Done()
			return host.Fail("cancelled")
		}
		return wait(ctx, timeout)
	}))
	return 1
}

func (h *Host) readyCheck(L *lua.LState) int {
	p := h.process(L, 1)
	fn := host.Func(L, 2)
	h.mu.Lock()
	h.readyFns[p.Name] = fn
	h.mu.Unlock()
	return 0
}

func (h *Host) check(L *lua.LState) int {
	kind := host.Str(L, 1)
	fn := host.Func(L, 2)
	o := host.CheckOptions(L, 3, "options")
	k := &checkKind{fn: fn, where: where(L)}
	switch opts := o.RawGetString("options").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		// A list of names, or names with their types:
		// {port = "number", host = "string"}.
		if first, _ := opts.Next(lua.LNil); opts.Len() > 0 || first == lua.LNil {
			k.options = host.OptStrings(L, o, "options")
			if k.options == nil {
				k.options = []string{}
			}
			break
		}
		k.types = map[string]string{}
		opts.ForEach(func(name, typ lua.LValue) {
			n, ok1 := name.(lua.LString)
			t, ok2 := typ.(lua.LString)
			if !ok1 || !ok2 || !validOptionType[string(t)] {
				host.ArgError(L, 3, `options: a list of names, or {name = "string"|"number"|"integer"|"boolean"}`)
			}
			k.options = append(k.options, string(n))
			k.types[string(n)] = string(t)
		})
		sort.Strings(k.options)
	default:
		host.ArgError(L, 3, `options: a list of names, or {name = "string"|"number"|"integer"|"boolean"}`)
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(kind) {
		host.ArgError(L, 1, "a check kind is a lowercase name (letters, digits, _)")
	}
	h.mu.Lock()
	prev := h.kinds[kind]
	if prev == nil {
		h.kinds[kind] = k
	}
	h.mu.Unlock()
	if prev != nil {
		// Like commands: a plugin never silently replaces a kind (the
		// built-in tcp, http and log above all).
		where := "built in"
		if prev.where != "" && !strings.HasPrefix(prev.where, "[launcher") {
			where = "defined at " + prev.where
		}
		host.ArgError(L, 1, fmt.Sprintf("check kind %q exists already (%s): choose another name", kind, where))
	}
	return 0
}

func (h *Host) command(L *lua.LState) int {
	name := host.Str(L, 1)
	o := host.CheckOptions(L, 2, "help", "usage")
	fn := host.Func(L, 3)
	if !regexp.MustCompile(`^[a-z][a-z0-9-]*$`).MatchString(name) {
		host.ArgError(L, 1, "a command name is lowercase letters, digits and -")
	}
	for _, b := range h.opts.Builtins {
		if b == name {
			host.Raise(L, "launcher.command: %q is a built-in command; choose another name", name)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.commands {
		if c.Name == name {
			host.Raise(L, "launcher.command: %q is already defined at %s", name, c.Where)
		}
	}
	h.commands = append(h.commands, &Command{Name: name, Help: host.OptString(L, o, "help"), Usage: host.OptString(L, o, "usage"),
		Where: where(L), fn: fn})
	return 0
}

// maxDrainTimeout bounds what a plugin may ask the exit to wait.
const maxDrainTimeout = 10 * time.Minute

// set_drain_timeout(seconds): how long launcher waits at exit for event
// handlers still running or queued (a slow webhook, many events at once);
// the longest value any script or plugin set applies.
func (h *Host) setDrainTimeout(L *lua.LState) int {
	secs := float64(L.CheckNumber(1))
	d := time.Duration(secs * float64(time.Second))
	if secs <= 0 || d > maxDrainTimeout {
		host.ArgError(L, 1, fmt.Sprintf("a drain time in seconds, more than 0 and at most %s", maxDrainTimeout))
	}
	h.mu.Lock()
	h.drainTimeout = max(h.drainTimeout, d)
	h.mu.Unlock()
	return 0
}

// userEventName is an event name's alphabet; its length (at most 64) is
// checked apart: a counted repetition compiles to 64 copies, at every
// start of the binary (0.5 ms of a 12 ms status).
var userEventName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]*$`)

// emit(name, [data]) publishes a user event: handlers of "user" get it
// (launcher.on("user", {name = NAME}, fn)), and so do the event stream of
// serve and --json output. data is any JSON value.
func (h *Host) emit(L *lua.LState) int {
	name := host.Str(L, 1)
	if len(name) > 64 || !userEventName.MatchString(name) {
		host.ArgError(L, 1, "an event name: a letter, then letters, digits, _ . : - (at most 64)")
	}
	var data any
	if L.GetTop() >= 2 {
		v, err := host.FromLua(L.Get(2))
		if err != nil {
			host.ArgError(L, 2, "data must be a JSON value: "+err.Error())
		}
		data = v
	}
	h.e.Bus().Publish(engine.Event{Kind: engine.User, Name: name, Data: data, Message: name})
	return 0
}

var validOptionType = map[string]bool{"string": true, "number": true, "integer": true, "boolean": true}

// optionTypeOK reports whether a YAML value fits a check option's type. A
// string with a {param} placeholder is checked once rendered, by the check.
func optionTypeOK(typ string, v any) bool {
	if s, ok := v.(string); ok && strings.Contains(s, "{") {
		return true
	}
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		switch v.(type) {
		case int, int64, uint64:
			return true
		}
		return false
	case "number":
		switch v.(type) {
		case int, int64, uint64, float64:
			return true
		}
		return false
	}
	return true
}
