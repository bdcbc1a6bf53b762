// Package binding is the `launcher` Lua module: the engine's operations,
// events, checks and commands made available to scripts and plugins. It
// runs every call on the Lua host's owner goroutine, waits through the
// host's tasks, and implements engine.Checker so Lua ready checks and check
// kinds gate bring-ups exactly like shell checks.
package binding

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/lua/host"
	"github.com/robotlauncher/launcher/stdlib"
)

// Options configure a Host.
type Options struct {
	// Log receives launcher.log and stdlib log lines (default stderr).
	Log io.Writer
	// Errors receives errors of handlers and checks (default Log).
	Errors io.Writer
	// Stdout receives print's lines (default os.Stdout).
	Stdout io.Writer
	// Builtins are the CLI's command names, which plugin commands may not
	// take.
	Builtins []string
	// MonitorEvery is the polling period of the monitor that reports exits
	// to handlers (default 250ms).
	MonitorEvery time.Duration
	// NoPlugins: the plugins were left out on purpose (--no-plugins), so
	// check kinds only they register are not errors when loading: stop,
	// status and watch work whatever the YAML references; a start that
	// needs such a kind is refused by its check.
	NoPlugins bool
}

// Host is a Lua runtime bound to an engine.
type Host struct {
	rt   *host.Runtime
	e    *engine.Engine
	cfg  *config.Config
	opts Options
	ctx  context.Context
	stop context.CancelFunc
	loop chan struct{}

	// Owner-goroutine state.
	args     []string
	handlers []*handler
	module   *lua.LTable
	// drainTimeout is how long the exit waits for handlers (0: the
	// caller's default); a plugin sets it with launcher.set_drain_timeout.
	drainTimeout time.Duration
	tally        tally
	subscribe    sync.Once

	// Shared with engine goroutines.
	mu       sync.Mutex
	readyFns map[string]*lua.LFunction
	kinds    map[string]*checkKind
	commands []*Command
	routes   []*Route
	// doneOneShots are the one-shots that succeeded in this script.
	doneOneShots map[string]bool
}

type checkKind struct {
	fn      *lua.LFunction
	options []string          // nil: any
	types   map[string]string // option name → "string", "number", "integer", "boolean"
	where   string
}

// Command is a subcommand a plugin added with launcher.command.
type Command struct {
	Name  string
	Help  string
	Usage string
	Where string
	fn    *lua.LFunction
}

type handler struct {
	id      int
	event   string
	process string // glob, "" = every process
	match   *lua.LTable
	fn      *lua.LFunction
	off     bool
	where   string
	cancel  context.CancelFunc // output followers
	once    bool               // off after its first event
	name    string             // user events: a name or glob

	// Each handler gets its events in order, one call at a time; handlers
	// do not wait for one another (a looping one starves only itself).
	queue       []engine.Event
	running     bool // a call runs (or waits)
	dispatching bool // next is looping
}

// New creates the runtime, loads the standard library and the built-in
// check kinds, and starts the owner goroutine. ctx cancels every task
// (Ctrl-C).
func New(ctx context.Context, e *engine.Engine, o Options) (*Host, error) {
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Errors == nil {
		o.Errors = o.Log
	}
	if o.MonitorEvery == 0 {
		o.MonitorEvery = 250 * time.Millisecond
	}
	ctx, stop := context.WithCancel(ctx)
	rt, err := host.New(ctx, host.Options{Stdout: o.Stdout})
	if err != nil {
		stop()
		return nil, err
	}
	h := &Host{rt: rt, e: e, cfg: e.Config(), opts: o, ctx: ctx, stop: stop, loop: make(chan struct{}),
		readyFns: map[string]*lua.LFunction{}, kinds: map[string]*checkKind{}, doneOneShots: map[string]bool{}}
	rt.OnError = func(err error) { fmt.Fprintf(h.opts.Errors, "launcher: lua: %v\n", err) }
	stdlib.Preload(rt, stdlib.Options{Log: o.Log})
	rt.L.PreloadModule("launcher", h.loader)
	checks, err := fs.ReadFile(stdlib.Lua, "lua/checks.lua")
	if err != nil {
		return nil, err
	}
	if err := h.loadChunk(string(checks), "[launcher checks]"); err != nil {
		return nil, err
	}
	e.SetChecker(h)
	go func() {
		defer close(h.loop)
		_ = rt.Loop(func() bool { return false })
	}()
	return h, nil
}

// Do runs f on the owner goroutine and waits for it.
func (h *Host) Do(f func()) error {
	done := make(chan struct{})
	if !h.rt.Post(func() { defer close(done); f() }) {
		return errors.New("the Lua host is closed")
	}
	select {
	case <-done:
		return nil
	case <-h.ctx.Done():
		return h.ctx.Err()
	}
}

// Close stops every task and the owner goroutine.
func (h *Host) Close() {
	h.stop()
	<-h.loop
	h.rt.Close()
}

func (h *Host) loadChunk(code, name string) error {
	L := h.rt.L
	fn, err := L.Load(strings.NewReader(code), name)
	if err != nil {
		return err
	}
	L.Push(fn)
	return L.PCall(0, 0, nil)
}

// LoadError is a plugin or script that does not load: file:line and what
// Lua said. The CLI exits 2 for it.
type LoadError struct {
	File string
	Msg  string
}

func (e *LoadError) Error() string { return e.Msg }

// LoadPlugins runs each plugin file (registrations only: waiting is not
// allowed while plugins load), then checks the config's check kinds.
func (h *Host) LoadPlugins(files []string) error {
	var err error
	if derr := h.Do(func() {
		for _, f := range files {
			if err = h.loadFile(f); err != nil {
				return
			}
		}
	}); derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	if h.opts.NoPlugins {
		return nil
	}
	return h.ValidateChecks()
}

// KnowsKind reports whether a check kind is registered (built in, or by a
// plugin): the engine's check of a start's plan asks it.
func (h *Host) KnowsKind(kind string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kinds[kind] != nil
}

func (h *Host) loadFile(path string) error {
	L := h.rt.L
	fn, err := L.LoadFile(path)
	if err != nil {
		return &LoadError{File: path, Msg: syntaxMessage(path, err)}
	}
	L.Push(fn)
	if err := L.PCall(0, 0, nil); err != nil {
		msg := err.Error()
		var api *lua.ApiError
		if errors.As(err, &api) {
			msg = api.Object.String()
			if api.StackTrace != "" {
				msg += "\n" + api.StackTrace
			}
		}
		return &LoadError{File: path, Msg: fmt.Sprintf("plugin %s failed to load: %s", path, msg)}
	}
	return nil
}

var syntaxRe = regexp.MustCompile(`line:(\d+)(?:\(column:\d+\))?\s*(.*)$`)

// syntaxMessage turns gopher-lua's compile error into "file:line: message".
func syntaxMessage(path string, err error) string {
	var api *lua.ApiError
	msg := err.Error()
	if errors.As(err, &api) {
		msg = api.Object.String()
	}
	// gopher-lua: "<path> line:12(column:3) near 'x':   syntax error",
	// or "<path> at EOF:   syntax error".
	if strings.Contains(msg, " at EOF:") {
		lines := 1
		if data, err := os.ReadFile(path); err == nil {
			lines = strings.Count(strings.TrimRight(string(data), "\n"), "\n") + 1
		}
		return fmt.Sprintf("%s:%d: syntax error: unexpected end of file", path, lines)
	}
	if m := syntaxRe.FindStringSubmatch(strings.TrimSpace(msg)); m != nil {
		detail := strings.Join(strings.Fields(m[2]), " ")
		if near, what, ok := strings.Cut(detail, ": "); ok && strings.HasPrefix(near, "near") {
			detail = what + " " + near
		}
		return fmt.Sprintf("%s:%s: %s", path, m[1], detail)
	}
	return path + ": " + msg
}

// ValidateChecks reports config processes whose ready_check names a check
// kind no plugin registered, or an option the kind does not take, with
// file:line.
func (h *Host) ValidateChecks() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs config.Errors
	var known []string
	for k := range h.kinds {
		known = append(known, k)
	}
	sort.Strings(known)
	for _, p := range h.cfg.Processes {
		rc := p.ReadyCheck
		if rc == nil || rc.Kind == "" {
			continue
		}
		k := h.kinds[rc.Kind]
		if k == nil {
			errs = append(errs, &config.Error{Pos: rc.Pos, Msg: fmt.Sprintf("process %q: unknown check kind %q", p.Name, rc.Kind),
				Hint: "known kinds: " + strings.Join(known, ", ") + "; a plugin adds kinds with launcher.check"})
			continue
		}
		if k.options == nil {
			continue
		}
		for _, o := range rc.Options {
			ok := false
			for _, a := range k.options {
				ok = ok || a == o.Name
			}
			if !ok {
				errs = append(errs, &config.Error{Pos: o.Pos, Msg: fmt.Sprintf("process %q: check %q has no option %q", p.Name, rc.Kind, o.Name),
					Hint: "its options: " + strings.Join(k.options, ", ")})
				continue
			}
			if typ := k.types[o.Name]; typ != "" && !optionTypeOK(typ, o.Value) {
				errs = append(errs, &config.Error{Pos: o.Pos, Msg: fmt.Sprintf("process %q: check %q option %q must be %s, not %v", p.Name, rc.Kind, o.Name, map[string]string{"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean"}[typ], o.Value),
					Hint: fmt.Sprintf("write it as a YAML %s (%s)", typ, k.where)})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Commands returns the subcommands plugins added.
func (h *Host) Commands() []*Command {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Command(nil), h.commands...)
}

// PluginFiles lists the plugins of a config: context.plugins, then every
// *.lua of the user's plugin directory ($XDG_CONFIG_HOME/launcher/plugins,
// default ~/.config/launcher/plugins).
func PluginFiles(cfg *config.Config, getenv func(string) string) []string {
	files := append([]string(nil), cfg.Plugins...)
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		if home := getenv("HOME"); home != "" {
			dir = filepath.Join(home, ".config")
		}
	}
	if dir != "" {
		matches, _ := filepath.Glob(filepath.Join(dir, "launcher", "plugins", "*.lua"))
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files
}

// RunScript runs a file as the main task with launcher.args = args and
// returns when it ends. A syntax error is a *LoadError; a runtime error
// carries the Lua traceback.
func (h *Host) RunScript(path string, args []string) error {
	var fn *lua.LFunction
	var err error
	if derr := h.Do(func() {
		h.setArgs(args)
		fn, err = h.rt.L.LoadFile(path)
	}); derr != nil {
		return derr
	}
	if err != nil {
		return &LoadError{File: path, Msg: syntaxMessage(path, err)}
	}
	return h.runTask("script "+path, fn, nil)
}

// RunCommand runs a plugin command like a script.
func (h *Host) RunCommand(c *Command, args []string) error {
	var argt *lua.LTable
	if err := h.Do(func() {
		h.setArgs(args)
		argt = host.ToLua(h.rt.L, args).(*lua.LTable)
	}); err != nil {
		return err
	}
	var code int
	err := h.runTaskRet("command "+c.Name, c.fn, []lua.LValue{argt}, func(ret []lua.LValue) {
		if len(ret) > 0 {
			if n, ok := ret[0].(lua.LNumber); ok {
				code = int(n)
			}
		}
	})
	if err == nil && code != 0 {
		return ExitStatus(code)
	}
	return err
}

// ExitStatus is a plugin command's exit code: the number its function
// returned (0 or nothing: success).
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// setArgs sets launcher.args (owner goroutine).
func (h *Host) setArgs(args []string) {
	h.args = args
	if h.module != nil {
		h.module.RawSetString("args", host.ToLua(h.rt.L, args))
	}
}

func (h *Host) runTask(name string, fn *lua.LFunction, args []lua.LValue) error {
	return h.runTaskRet(name, fn, args, nil)
}

// runTaskRet runs fn as a task and waits for its end; ret (on the owner)
// gets what it returned.
func (h *Host) runTaskRet(name string, fn *lua.LFunction, args []lua.LValue, ret func([]lua.LValue)) error {
	done := make(chan error, 1)
	if err := h.Do(func() {
		h.rt.Spawn(name, fn, args, func(vals []lua.LValue, err error) {
			if err == nil && ret != nil {
				ret(vals)
			}
			done <- err
		})
	}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-h.ctx.Done():
		return h.ctx.Err()
	}
}

// DrainReport is what Drain left undone.
type DrainReport struct {
	// Idle: every queued handler call ran to its end.
	Idle bool
	// Running names the handlers whose call was still running
	// ("exited handler at alerts.lua:12").
	Running []string
	// Undelivered counts, by event kind, the events still queued for a
	// handler (one per handler it was meant for).
	Undelivered map[string]int
	// Waited is the drain time that applied (a plugin may have set it).
	Waited time.Duration
}

// String says it for the operator: which handlers and how many events of
// which kind.
func (r DrainReport) String() string {
	var parts []string
	if len(r.Running) > 0 {
		parts = append(parts, "running: "+strings.Join(r.Running, ", "))
	}
	if len(r.Undelivered) > 0 {
		kinds := make([]string, 0, len(r.Undelivered))
		for k := range r.Undelivered {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var ks []string
		for _, k := range kinds {
			ks = append(ks, fmt.Sprintf("%d %s", r.Undelivered[k], k))
		}
		parts = append(parts, "events not delivered: "+strings.Join(ks, ", "))
	} else {
		parts = append(parts, "every event was delivered")
	}
	return strings.Join(parts, "; ")
}

// Drain waits (at most d, or the time a plugin set with
// launcher.set_drain_timeout) for handler calls that are still queued or
// running, so events of the last operation reach their handlers, and
// reports what was left: Idle is false when handlers were still busy at
// the deadline, or when Ctrl-C (the host's context) cut them. It reads a
// tally kept beside the owner goroutine, so a handler that never yields
// (and holds that goroutine) is named too.
func (h *Host) Drain(d time.Duration) DrainReport {
	// The monitor looks once more, so the exits of the last operation are
	// events before the handlers drain.
	h.e.MonitorSettle()
	h.e.Bus().Flush()
	if set := h.getDrainTimeout(); set > 0 {
		d = set
	}
	deadline := time.Now().Add(d)
	for {
		rep := h.tally.report()
		rep.Waited = d
		if rep.Idle || h.ctx.Err() != nil || !time.Now().Before(deadline) {
			return rep
		}
		select {
		case <-h.ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tally counts, for Drain, the events on their way to handlers: posted to
// the owner goroutine and not dispatched yet, queued for a handler, and
// the handler calls running. Its own lock: read while the owner is busy.
type tally struct {
	mu      sync.Mutex
	posted  map[string]int // by event kind, not dispatched yet
	queued  map[string]int // by event kind, one per handler call
	running map[string]int // by handler ("exited handler at alerts.lua:12")
	wanted  map[string]int // handlers on, by event kind
}

func (t *tally) wants(kind string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wanted[kind] > 0
}

func (t *tally) add(m *map[string]int, k string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	if (*m)[k] += n; (*m)[k] <= 0 {
		delete(*m, k)
	}
}

func (t *tally) report() DrainReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := DrainReport{Idle: len(t.posted)+len(t.queued)+len(t.running) == 0}
	for k := range t.running {
		r.Running = append(r.Running, k)
	}
	sort.Strings(r.Running)
	for _, m := range []map[string]int{t.posted, t.queued} {
		for k, n := range m {
			if r.Undelivered == nil {
				r.Undelivered = map[string]int{}
			}
			r.Undelivered[k] += n
		}
	}
	return r
}

func (h *Host) getDrainTimeout() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drainTimeout
}

func where(L *lua.LState) string {
	return strings.TrimSuffix(L.Where(1), ":")
}
