// Package host owns a gopher-lua state and runs all Lua on one goroutine.
//
// gopher-lua's LState is not safe for concurrent use, so a Runtime has one
// owner goroutine (the one in Loop); every other goroutine only posts
// closures to it. Lua code runs in tasks (coroutines): the main script, each
// event-handler call, each ready-check call. A task that waits (sleep, a
// process becoming ready, the next log line) yields to the scheduler, which
// runs other tasks and resumes it when the Go side has the answer. The
// prelude makes such waits work inside pcall, coroutines and required
// modules' functions (see prelude.lua). The package knows nothing about
// processes: the launcher module is built on it in lua/binding.
package host

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
)

//go:embed prelude.lua
var prelude string

// Runtime is one Lua state and its scheduler.
type Runtime struct {
	L *lua.LState

	inbox  chan func()
	ctx    context.Context
	cancel context.CancelFunc
	host   *lua.LTable // the HOST sentinel
	done   *lua.LTable // marks a task that returned normally

	tasks  map[*lua.LState]*Task
	traces map[*lua.LState]string // traceback of a task's last error
	ops    map[uint64]*op
	nextOp uint64
	wrap   *lua.LFunction

	// OnError receives errors of tasks nobody waits for (event handlers,
	// ready checks): they are reported and the engine goes on.
	OnError func(err error)

	mu     sync.Mutex
	closed bool
}

// Task is one coroutine run by the scheduler.
type Task struct {
	Name    string
	th      *lua.LState
	fn      *lua.LFunction
	args    []lua.LValue
	cancel  context.CancelFunc
	ctx     context.Context
	waiting uint64
	started bool
	// Done is called on the owner goroutine when the task ends.
	Done func(ret []lua.LValue, err error)
}

// Context returns the task's context (cancelled with the task).
func (t *Task) Context() context.Context { return t.ctx }

type op struct {
	task   *Task
	done   bool
	res    *lua.LTable
	cancel context.CancelFunc
}

// Options configure a Runtime.
type Options struct {
	// CallStackSize and RegistryMaxSize bound the state (0: defaults).
	CallStackSize   int
	RegistryMaxSize int
	// Stdout receives print's lines, each in one Write so that a line
	// never interleaves with another writer's (gopher-lua's print writes
	// every argument separately to os.Stdout). Nil: os.Stdout.
	Stdout io.Writer
}

// New creates a runtime whose Lua stops (between instructions, and in
// every pending wait) when ctx is cancelled.
func New(ctx context.Context, o Options) (*Runtime, error) {
	if o.CallStackSize == 0 {
		o.CallStackSize = 2048
	}
	if o.RegistryMaxSize == 0 {
		o.RegistryMaxSize = 1 << 20
	}
	// Every task is a thread: stacks start small and grow, so a handler
	// call or a check poll costs little.
	L := lua.NewState(lua.Options{CallStackSize: o.CallStackSize, MinimizeStackMemory: true,
		RegistrySize: 256, RegistryMaxSize: o.RegistryMaxSize, RegistryGrowStep: 64})
	ctx, cancel := context.WithCancel(ctx)
	rt := &Runtime{L: L, inbox: make(chan func(), 4096), ctx: ctx, cancel: cancel,
		tasks: map[*lua.LState]*Task{}, ops: map[uint64]*op{}, traces: map[*lua.LState]string{}}
	rt.host = L.NewTable()
	rt.done = L.NewTable()
	L.SetContext(ctx)
	// __where: the user's "file:line:" for errors the prelude raises on the
	// caller's behalf (gopher-lua's error levels stop at coroutine edges).
	L.SetGlobal("__where", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(UserWhere(L)))
		return 1
	}))
	fn, err := L.Load(strings.NewReader(prelude), "[launcher]")
	if err != nil {
		return nil, fmt.Errorf("lua prelude: %w", err)
	}
	L.Push(fn)
	L.Push(rt.host)
	if err := L.PCall(1, 0, nil); err != nil {
		return nil, fmt.Errorf("lua prelude: %w", err)
	}
	// Every task runs its function through this wrapper: a task that ends
	// without returning through it was cut short by a yield Lua could not
	// perform (across a metamethod or an iterator).
	// __arm installs the traceback hook in the task's thread (gopher-lua
	// keeps no traceback for errors in coroutines).
	L.SetGlobal("__arm", L.NewFunction(func(L *lua.LState) int {
		L.Panic = rt.panicHook
		return 0
	}))
	wrap, err := L.Load(strings.NewReader(`local DONE, arm = ..., __arm; __arm = nil; return function(f, ...) arm() return DONE, f(...) end`), "[launcher]")
	if err != nil {
		return nil, err
	}
	L.Push(wrap)
	L.Push(rt.done)
	if err := L.PCall(1, 1, nil); err != nil {
		return nil, err
	}
	rt.wrap = L.Get(-1).(*lua.LFunction)
	L.Pop(1)
	out := o.Stdout
	if out == nil {
		out = os.Stdout
	}
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		var b strings.Builder
		for i := 1; i <= L.GetTop(); i++ {
			if i > 1 {
				b.WriteByte('\t')
			}
			b.WriteString(L.ToStringMeta(L.Get(i)).String())
		}
		b.WriteByte('\n')
		_, _ = io.WriteString(out, b.String())
		return 0
	}))
	return rt, nil
}

// Context is the runtime's root context.
func (rt *Runtime) Context() context.Context { return rt.ctx }

// Post runs f on the owner goroutine. It is the only way in from other
// goroutines; it returns false once the runtime is closed.
func (rt *Runtime) Post(f func()) bool {
	rt.mu.Lock()
	closed := rt.closed
	rt.mu.Unlock()
	if closed {
		return false
	}
	select {
	case rt.inbox <- f:
		return true
	case <-rt.ctx.Done():
		return false
	}
}

// Loop runs posted work and tasks on the calling goroutine (which becomes
// the owner) until stop returns true (checked after each step) or the
// runtime's context ends.
func (rt *Runtime) Loop(stop func() bool) error {
	for !stop() {
		select {
		case f := <-rt.inbox:
			f()
		case <-rt.ctx.Done():
			return rt.ctx.Err()
		}
	}
	return nil
}

// RunPending runs what is posted until nothing is left (or ctx ends).
func (rt *Runtime) RunPending(ctx context.Context, idle time.Duration) {
	for {
		select {
		case f := <-rt.inbox:
			f()
		case <-time.After(idle):
			return
		case <-ctx.Done():
			return
		}
	}
}

// Close cancels every task and releases the state. Call it on the owner.
func (rt *Runtime) Close() {
	rt.mu.Lock()
	rt.closed = true
	rt.mu.Unlock()
	rt.cancel()
	for _, t := range rt.tasks {
		t.cancel()
	}
	rt.L.Close()
}

// Spawn starts fn(args...) as a new task (call on the owner). It runs until
// its first wait before Spawn returns.
func (rt *Runtime) Spawn(name string, fn *lua.LFunction, args []lua.LValue, done func([]lua.LValue, error)) *Task {
	t := rt.NewTask(name, fn, args, done)
	rt.Start(t)
	return t
}

// NewTask makes a task that Start runs (call on the owner). In between, its
// Cancel can be handed to another goroutine: a task that never waits holds
// the owner goroutine from its start on, and only Cancel (its thread's
// context, checked by the VM) can stop it.
func (rt *Runtime) NewTask(name string, fn *lua.LFunction, args []lua.LValue, done func([]lua.LValue, error)) *Task {
	th, cancel := rt.L.NewThread()
	t := &Task{Name: name, th: th, fn: fn, args: args, cancel: cancel, ctx: th.Context(), Done: done}
	if t.ctx == nil {
		t.ctx = rt.ctx
	}
	rt.tasks[th] = t
	return t
}

// Start runs a task made by NewTask until its first wait (call on the owner).
func (rt *Runtime) Start(t *Task) { rt.resume(t, nil) }

// Cancel cancels a task: its pending wait returns nil, "cancelled".
func (t *Task) Cancel() { t.cancel() }

// resume runs t until it waits or ends. answer is the result table of the
// wait it was parked on (nil at the start).
func (rt *Runtime) resume(t *Task, answer *lua.LTable) {
	var (
		st   lua.ResumeState
		err  error
		vals []lua.LValue
	)
	func() {
		defer func() {
			// gopher-lua can panic when a yield crosses a Go frame.
			if r := recover(); r != nil {
				st, err = lua.ResumeError, fmt.Errorf("%v (a launcher function that waits was called where Lua cannot pause: inside a metamethod, a for-in iterator, table.sort or a gsub callback)", r)
			}
		}()
		if !t.started {
			t.started = true
			args := append([]lua.LValue{t.fn}, t.args...)
			st, err, vals = rt.L.Resume(t.th, rt.wrap, args...)
		} else {
			st, err, vals = rt.L.Resume(t.th, rt.wrap, answer)
		}
	}()
	switch st {
	case lua.ResumeYield:
		if len(vals) >= 2 && vals[0] == rt.host {
			id, _ := vals[1].(lua.LNumber)
			o := rt.ops[uint64(id)]
			if o == nil {
				rt.finish(t, nil, errors.New("internal error: wait on an unknown operation"))
				return
			}
			t.waiting = uint64(id)
			if o.done {
				rt.deliver(uint64(id), o)
			}
			return
		}
		rt.finish(t, nil, errors.New("coroutine.yield was called outside of a coroutine of the script's own (use coroutine.create or coroutine.wrap)"))
	case lua.ResumeOK:
		if len(vals) == 0 || vals[0] != rt.done {
			rt.finish(t, nil, errors.New("a launcher function that waits was called where Lua cannot pause (inside a metamethod, a for-in iterator, table.sort or a gsub callback); call it from plain code, and read watchers with `while` and w:next()"))
			return
		}
		rt.finish(t, vals[1:], nil)
	default:
		rt.finish(t, nil, err)
	}
}

// panicHook records the traceback of an error raised in a task, then
// raises it as gopher-lua would.
func (rt *Runtime) panicHook(L *lua.LState) {
	rt.traces[L] = traceback(L)
	panic(&lua.ApiError{Type: lua.ApiErrorRun, Object: L.Get(-1)})
}

func traceback(L *lua.LState) string {
	var b strings.Builder
	b.WriteString("stack traceback:")
	for i := 0; i < 30; i++ {
		dbg, ok := L.GetStack(i)
		if !ok {
			break
		}
		_, _ = L.GetInfo("Snl", dbg, lua.LNil)
		where := strings.TrimSuffix(L.Where(i), ":")
		if where == "" {
			where = "[Go]"
		}
		name := dbg.Name
		switch {
		case name != "":
			name = "function '" + name + "'"
		case dbg.What == "main":
			name = "main chunk"
		default:
			name = "function <" + dbg.Source + ":" + fmt.Sprint(dbg.LineDefined) + ">"
		}
		if strings.HasPrefix(where, "[launcher]") || strings.HasPrefix(dbg.Source, "[launcher]") {
			continue // the host's own frames
		}
		fmt.Fprintf(&b, "\n\t%s: in %s", where, name)
	}
	return b.String()
}

func (rt *Runtime) finish(t *Task, ret []lua.LValue, err error) {
	delete(rt.tasks, t.th)
	trace := rt.traces[t.th]
	delete(rt.traces, t.th)
	if err != nil && trace != "" && !strings.Contains(err.Error(), "stack traceback") {
		err = &traced{err: err, trace: trace}
	}
	t.cancel()
	for id, o := range rt.ops {
		if o.task == t {
			if o.cancel != nil {
				o.cancel()
			}
			delete(rt.ops, id)
		}
	}
	if err != nil {
		err = &Error{Task: t.Name, Err: err}
	}
	if t.Done != nil {
		t.Done(ret, err)
	} else if err != nil && rt.OnError != nil {
		rt.OnError(err)
	}
}

type traced struct {
	err   error
	trace string
}

func (e *traced) Error() string { return errorText(e.err) + "\n" + e.trace }
func (e *traced) Unwrap() error { return e.err }

func errorText(err error) string {
	var api *lua.ApiError
	if errors.As(err, &api) {
		return api.Object.String()
	}
	return err.Error()
}

// Error is a Lua error of a task, with its traceback when Lua gave one.
type Error struct {
	Task string
	Err  error
}

func (e *Error) Error() string {
	var tr *traced
	if errors.As(e.Err, &tr) {
		return tr.Error()
	}
	msg := errorText(e.Err)
	var api *lua.ApiError
	if errors.As(e.Err, &api) && api.StackTrace != "" && !strings.Contains(msg, "stack traceback") {
		msg += "\n" + api.StackTrace
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Cancelled reports whether err ends a task because its context was
// cancelled (Ctrl-C).
func Cancelled(err error) bool {
	return err != nil && (errors.Is(err, context.Canceled) || strings.Contains(err.Error(), context.Canceled.Error()))
}

// ErrCannotPause is the message for a wait where Lua cannot pause.
const ErrCannotPause = "this launcher function waits, and Lua cannot pause here: inside a for-in iterator, a metamethod, a table.sort comparator or a string.gsub callback. Call it outside (collect values first; read watchers with `while` and w:next())"

// nestedVM reports whether the running Lua code was called back from Go
// (a for-in iterator, a metamethod, table.sort, string.gsub) rather than
// run by the task's own VM loop: on this goroutine, between here and the
// start of the running coroutine (threadRun), the VM loop appears more
// than once.
func nestedVM() bool {
	pcs := make([]uintptr, 512)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	loops := 0
	for {
		f, more := frames.Next()
		fn := f.Function
		switch {
		case strings.HasSuffix(fn, "gopher-lua.mainLoop"), strings.HasSuffix(fn, "gopher-lua.mainLoopWithContext"):
			loops++
		case strings.HasSuffix(fn, "gopher-lua.threadRun"):
			return loops > 1
		}
		if !more {
			return false // no Resume within reach: do not guess
		}
	}
}

// AsyncFunc wraps a Go primitive that returns an operation id (from Async)
// into the Lua function scripts call: it waits for the operation with
// __await. Waits must be Lua calls for gopher-lua to pause them (see the
// package comment); this is the one place that builds that shim.
func AsyncFunc(L *lua.LState, prim lua.LGFunction, what string) *lua.LFunction {
	fn, err := L.Load(strings.NewReader(`local prim, what = ... return function(...) return __await(prim(...), what) end`), "[launcher]")
	if err != nil {
		panic(err)
	}
	L.Push(fn)
	L.Push(L.NewFunction(prim))
	L.Push(lua.LString(what))
	L.Call(2, 1)
	f := L.Get(-1).(*lua.LFunction)
	L.Pop(1)
	return f
}

// Converter builds the Lua values of an answer on the owner goroutine (Lua
// values must not be created elsewhere).
type Converter func(L *lua.LState) []lua.LValue

// Async starts work for the task running in L and returns the id of the
// operation, which a Lua shim then waits on with __await(id). work runs
// on its own goroutine with a context that ends with the task; its answer
// is converted on the owner. Call it from a Go function called by Lua.
func (rt *Runtime) Async(L *lua.LState, work func(ctx context.Context) Converter) lua.LNumber {
	var t *Task
	for l := L; l != nil && t == nil; l = l.Parent {
		t = rt.tasks[l]
	}
	if t == nil {
		// The main state (a plugin being loaded, a sync hook): no task to
		// park.
		L.RaiseError("this function waits, and can only be called from a script, an event handler or a check (not while plugins load)")
		return 0
	}
	if nestedVM() {
		// Checked before yielding: gopher-lua cannot pause a Lua function
		// that Go called back (it would fail later with a nil pointer
		// dereference or end the task silently).
		Raise(L, "%s", ErrCannotPause)
		return 0
	}
	rt.nextOp++
	id := rt.nextOp
	ctx, cancel := context.WithCancel(t.ctx)
	o := &op{task: t, cancel: cancel}
	rt.ops[id] = o
	go func() {
		conv := work(ctx)
		cancel()
		rt.Post(func() {
			o.res = rt.L.NewTable()
			vals := conv(rt.L)
			for i, v := range vals {
				o.res.RawSetInt(i+1, v)
			}
			o.res.RawSetString("n", lua.LNumber(len(vals)))
			o.done = true
			if t.waiting == id {
				rt.deliver(id, o)
			}
		})
	}()
	return lua.LNumber(id)
}

func (rt *Runtime) deliver(id uint64, o *op) {
	delete(rt.ops, id)
	o.task.waiting = 0
	if _, alive := rt.tasks[o.task.th]; !alive {
		return
	}
	rt.resume(o.task, o.res)
}

// Values returns a Converter of fixed Go values: nil, bool, numbers,
// strings, string slices and maps become Lua values.
func Values(vs ...any) Converter {
	return func(L *lua.LState) []lua.LValue {
		out := make([]lua.LValue, len(vs))
		for i, v := range vs {
			out[i] = ToLua(L, v)
		}
		return out
	}
}

// Fail is the Converter of an operational failure: nil, message.
func Fail(msg string) Converter { return Values(nil, msg) }

// Waiter returns ("cancelled" | "timeout" | err) for a finished context.
func Waiter(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}
