package binding

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/lua/host"
)

// on(event, [filter], fn) subscribes fn to an event; filter is a process
// name or glob, or a table {process=, match=} (match: a regular
// expression, for output events). It returns a handle with :off().
func (h *Host) on(L *lua.LState) int {
	event := host.Str(L, 1)
	known := false
	for _, e := range Events {
		known = known || e == event
	}
	if !known {
		host.ArgError(L, 1, "unknown event "+event+" (events: "+strings.Join(Events, ", ")+")")
	}
	hd := &handler{event: event, where: where(L)}
	var fnArg int
	switch f := L.Get(2).(type) {
	case *lua.LFunction:
		hd.fn, fnArg = f, 2
	case lua.LString:
		hd.process, fnArg = string(f), 3
	case *lua.LTable:
		o := host.CheckOptions(L, 2, "process", "match", "once", "name")
		hd.process = host.OptString(L, o, "process")
		hd.name = host.OptString(L, o, "name")
		hd.once = host.OptBool(L, o, "once")
		if m := host.OptString(L, o, "match"); m != "" {
			re, err := regexp.Compile(m)
			if err != nil {
				host.ArgError(L, 2, "bad match: "+err.Error())
			}
			hd.match = L.NewTable()
			hd.match.RawSetString("re", lua.LString(re.String()))
		}
		fnArg = 3
	default:
		host.ArgError(L, 2, "expected a filter (process name, glob or table) or a function")
	}
	if hd.fn == nil {
		hd.fn = host.Func(L, fnArg)
	}
	if event == "output" && hd.match == nil {
		host.Raise(L, `launcher.on("output", …) needs a filter with match: {process = "name", match = "regexp"}`)
	}
	h.handlers = append(h.handlers, hd)
	hd.id = len(h.handlers)
	h.tally.add(&h.tally.wanted, hd.event, 1)
	if event == "exited" || event == "host_lost" || event == "host_back" || event == "restarted" {
		h.e.MonitorOnce(h.ctx, h.opts.MonitorEvery)
	}
	if event == "output" {
		h.followOutput(hd)
	} else {
		h.ensureSubscribed()
	}
	L.Push(newHandle(L, hd, "launcher.Subscription("+hd.event+")", map[string]lua.LValue{
		"off": L.NewFunction(func(L *lua.LState) int {
			h.turnOff(hd)
			if hd.cancel != nil {
				hd.cancel()
			}
			return 0
		}),
	}))
	return 1
}

// group() returns a handler group: g:on(...) subscribes as launcher.on
// does, g:off() removes every handler of the group at once (a plugin's
// feature switched off, a stage's handlers dropped when it ends).
func (h *Host) group(L *lua.LState) int {
	var members []*handler
	g := L.NewTable()
	g.RawSetString("on", L.NewFunction(func(L *lua.LState) int {
		if _, ok := L.Get(1).(*lua.LTable); !ok {
			host.Raise(L, "call it as group:on(event, [filter], fn)")
		}
		L.Remove(1)
		n := h.on(L)
		if ud, ok := L.Get(-1).(*lua.LUserData); ok {
			if hd, ok := ud.Value.(*handler); ok {
				members = append(members, hd)
			}
		}
		return n
	}))
	g.RawSetString("off", L.NewFunction(func(L *lua.LState) int {
		for _, hd := range members {
			h.turnOff(hd)
			if hd.cancel != nil {
				hd.cancel()
			}
		}
		members = nil
		return 0
	}))
	L.Push(g)
	return 1
}

// newHandle makes a userdata with methods and a readable tostring. The Go
// value stays owned by the host (the GC of Lua does not end it).
func newHandle(L *lua.LState, v any, name string, methods map[string]lua.LValue) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = v
	mt := L.NewTable()
	idx := L.NewTable()
	for k, m := range methods {
		idx.RawSetString(k, m)
	}
	mt.RawSetString("__index", idx)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(name))
		return 1
	}))
	L.SetMetatable(ud, mt)
	return ud
}

// ensureSubscribed connects the engine's bus to the handlers, once.
func (h *Host) ensureSubscribed() {
	h.subscribe.Do(func() {
		h.e.Bus().Subscribe(nil, func(ev engine.Event) {
			k := eventName(ev.Kind)
			if !h.tally.wants(k) {
				// No handler for it: nothing to deliver, nothing to count
				// as undelivered at exit.
				return
			}
			h.tally.add(&h.tally.posted, k, 1)
			if !h.rt.Post(func() { h.tally.add(&h.tally.posted, k, -1); h.dispatch(ev) }) {
				h.tally.add(&h.tally.posted, k, -1) // closed: it never will
			}
		})
	})
}

func eventName(k engine.Kind) string { return string(k) }

// turnOff removes hd from dispatch (owner).
func (h *Host) turnOff(hd *handler) {
	if !hd.off {
		hd.off = true
		h.tally.add(&h.tally.wanted, hd.event, -1)
	}
}

// dispatch queues a handler call for every handler ev matches (owner).
func (h *Host) dispatch(ev engine.Event) {
	name := eventName(ev.Kind)
	if ev.Kind == engine.Ready && ev.Already {
		return // it was ready before this start: not news
	}
	for _, hd := range h.handlers {
		if hd.off || hd.event != name || hd.event == "output" {
			continue
		}
		if hd.process != "" && !engine.Glob(hd.process, ev.Process) {
			continue
		}
		if hd.name != "" && !engine.Glob(hd.name, ev.Name) {
			continue
		}
		h.enqueue(hd, ev)
		if hd.once {
			h.turnOff(hd)
		}
	}
}

// enqueue queues a call of hd for ev. Each handler's calls run one at a
// time and in order (a call starts when its previous one has finished,
// waits included); different handlers do not wait for one another.
func (h *Host) enqueue(hd *handler, ev engine.Event) {
	hd.queue = append(hd.queue, ev)
	h.tally.add(&h.tally.queued, eventName(ev.Kind), 1)
	if !hd.running {
		h.next(hd)
	}
}

// next starts hd's queued calls while none of its calls runs. A call that
// ends without waiting ends inside Spawn: the loop (not recursion) goes on.
func (h *Host) next(hd *handler) {
	if hd.dispatching {
		return
	}
	hd.dispatching = true
	defer func() { hd.dispatching = false }()
	for !hd.running && len(hd.queue) > 0 {
		ev := hd.queue[0]
		hd.queue = hd.queue[1:]
		t := eventTable(h.rt.L, ev)
		hd.running = true
		who := hd.event + " handler at " + hd.where
		h.tally.add(&h.tally.running, who, 1)
		h.tally.add(&h.tally.queued, eventName(ev.Kind), -1)
		h.rt.Spawn("handler for "+hd.event+" ("+hd.where+")", hd.fn, []lua.LValue{t}, func(_ []lua.LValue, err error) {
			if err != nil && !host.Cancelled(err) {
				h.rt.OnError(err)
			}
			h.tally.add(&h.tally.running, who, -1)
			hd.running = false
			h.next(hd)
		})
	}
}

func eventTable(L *lua.LState, ev engine.Event) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("event", lua.LString(eventName(ev.Kind)))
	set := func(k, v string) {
		if v != "" {
			t.RawSetString(k, lua.LString(v))
		}
	}
	set("process", ev.Process)
	set("machine", ev.Machine)
	set("session", ev.Session)
	set("message", ev.Message)
	set("line", ev.Line)
	set("key", ev.Key)
	t.RawSetString("time", lua.LNumber(float64(ev.Time.UnixNano())/1e9))
	if ev.ExitCode != nil {
		t.RawSetString("exit_code", lua.LNumber(*ev.ExitCode))
	}
	if ev.PID != 0 {
		t.RawSetString("pid", lua.LNumber(ev.PID))
	}
	if ev.Kind == engine.Exited {
		t.RawSetString("expected", lua.LBool(ev.Expected))
	}
	if ev.Kind == engine.Restarted || ev.Restarts > 0 {
		t.RawSetString("restarts", lua.LNumber(ev.Restarts))
	}
	if ev.Kind == engine.User {
		t.RawSetString("name", lua.LString(ev.Name))
		if ev.Data != nil {
			t.RawSetString("data", host.ToLua(L, ev.Data))
		}
	}
	return t
}

// followOutput follows the logs of the processes hd's filter names and
// queues a handler call for each new line that matches. Lines are
// filtered in Go, so a chatty process costs no Lua.
func (h *Host) followOutput(hd *handler) {
	re := regexp.MustCompile(hd.match.RawGetString("re").String())
	var names []string
	for _, p := range h.cfg.Processes {
		if hd.process == "" || engine.Glob(hd.process, p.Name) {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(h.ctx)
	hd.cancel = cancel
	go func() {
		_ = h.e.Watch(ctx, names, 0, func(l engine.LogLine) {
			if l.Err != nil || executor.IsLauncherLine(l.Line) || !re.MatchString(executor.StripTimestamp(l.Line)) {
				return
			}
			ev := engine.Event{Time: time.Now(), Kind: engine.Output, Process: l.Process, Line: executor.StripTimestamp(l.Line)}
			if p := h.cfg.Process(l.Process); p != nil {
				ev.Machine, ev.Session = p.Machine, p.Session
			}
			h.tally.add(&h.tally.posted, "output", 1)
			if !h.rt.Post(func() {
				h.tally.add(&h.tally.posted, "output", -1)
				if !hd.off {
					h.enqueue(hd, ev)
					if hd.once {
						h.turnOff(hd)
						hd.cancel()
					}
				}
			}) {
				h.tally.add(&h.tally.posted, "output", -1)
			}
		})
	}()
}

// watcher is launcher.watch's handle: a follower goroutine fills a
// bounded buffer; w:next() takes from it, waiting when it is empty.
type watcher struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	closed  bool
	wake    chan struct{}
	cancel  context.CancelFunc
}

const watchBuffer = 10000

func (h *Host) watch(L *lua.LState) int {
	p := h.process(L, 1)
	o := host.CheckOptions(L, 2, "lines", "match")
	n := 0
	if v, ok := o.RawGetString("lines").(lua.LNumber); ok {
		n = int(v)
	}
	var re *regexp.Regexp
	if m := host.OptString(L, o, "match"); m != "" {
		var err error
		if re, err = regexp.Compile(m); err != nil {
			host.ArgError(L, 2, "bad match: "+err.Error())
		}
	}
	ctx, cancel := context.WithCancel(h.ctx)
	w := &watcher{wake: make(chan struct{}, 1), cancel: cancel}
	go func() {
		_ = h.e.Watch(ctx, []string{p.Name}, n, func(l engine.LogLine) {
			// The process's output only, as run_log gives it.
			if l.Err != nil || executor.IsLauncherLine(l.Line) {
				return
			}
			line := executor.StripTimestamp(l.Line)
			if re != nil && !re.MatchString(line) {
				return
			}
			w.mu.Lock()
			if len(w.lines) >= watchBuffer {
				w.lines = w.lines[1:]
				w.dropped++
			}
			w.lines = append(w.lines, line)
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
		})
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}()
	L.Push(newHandle(L, w, "launcher.Watch("+p.Name+")", map[string]lua.LValue{
		"next": host.AsyncFunc(L, func(L *lua.LState) int {
			w := checkWatcher(L)
			o := host.CheckOptions(L, 2, "timeout")
			timeout := host.OptDuration(L, o, "timeout")
			L.Push(h.rt.Async(L, func(ctx context.Context) host.Converter {
				var timer <-chan time.Time
				if timeout > 0 {
					t := time.NewTimer(timeout)
					defer t.Stop()
					timer = t.C
				}
				for {
					w.mu.Lock()
					if len(w.lines) > 0 {
						line := w.lines[0]
						w.lines = w.lines[1:]
						w.mu.Unlock()
						return host.Values(line)
					}
					closed := w.closed
					w.mu.Unlock()
					if closed {
						return host.Fail("closed")
					}
					select {
					case <-w.wake:
					case <-timer:
						return host.Fail("timeout")
					case <-ctx.Done():
						return host.Fail("cancelled")
					}
				}
			}))
			return 1
		}, "watcher:next"),
		"close": L.NewFunction(func(L *lua.LState) int {
			w := checkWatcher(L)
			w.cancel()
			w.mu.Lock()
			w.closed = true
			w.lines = nil
			w.mu.Unlock()
			return 0
		}),
	}))
	return 1
}

func checkWatcher(L *lua.LState) *watcher {
	ud := L.CheckUserData(1)
	w, ok := ud.Value.(*watcher)
	if !ok {
		host.ArgError(L, 1, "expected a watcher (use w:next(), not w.next())")
	}
	return w
}
