package binding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/lua/host"
)

var _ engine.Checker = (*Host)(nil)

// HasCustom reports whether a Lua ready check is registered for process.
func (h *Host) HasCustom(process string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readyFns[process] != nil
}

// Check runs one poll of a process's Lua checks: its check kind (from the
// YAML), then its launcher.ready_check function; both must pass. It runs
// as a task on the owner goroutine and may wait (exec, http, sleep); an
// error in it is reported and counts as "not ready".
func (h *Host) Check(ctx context.Context, p engine.Probe) (bool, string, error) {
	h.mu.Lock()
	var kind *checkKind
	if p.Process.CheckKind != "" {
		kind = h.kinds[p.Process.CheckKind]
	}
	fn := h.readyFns[p.Process.Name]
	h.mu.Unlock()
	if p.Process.CheckKind != "" && kind == nil {
		return false, "", fmt.Errorf("unknown check kind %q", p.Process.CheckKind)
	}
	for _, f := range []*lua.LFunction{fnOf(kind), fn} {
		if f == nil {
			continue
		}
		ok, reason, err := h.runCheck(ctx, f, p, f == fnOf(kind))
		if err != nil || !ok {
			return false, reason, err
		}
	}
	return true, "", nil
}

func fnOf(k *checkKind) *lua.LFunction {
	if k == nil {
		return nil
	}
	return k.fn
}

type checkResult struct {
	ok     bool
	reason string
	err    error
}

func (h *Host) runCheck(ctx context.Context, fn *lua.LFunction, p engine.Probe, isKind bool) (bool, string, error) {
	start := time.Now()
	res := make(chan checkResult, 1)
	// The task is cancelled from this goroutine, not the owner's: a check
	// that never waits holds the owner goroutine, and only its thread's
	// context (checked by the VM) can stop it.
	var (
		mu        sync.Mutex
		task      *host.Task
		cancelled bool
	)
	posted := h.rt.Post(func() {
		L := h.rt.L
		proc := L.NewTable()
		proc.RawSetString("name", lua.LString(p.Process.Name))
		proc.RawSetString("machine", lua.LString(p.Process.Machine))
		proc.RawSetString("session", lua.LString(p.Process.Session))
		proc.RawSetString("docker", lua.LString(p.Process.Docker))
		proc.RawSetString("cmd", lua.LString(p.Process.Cmd))
		proc.RawSetString("log", lua.LString(p.LogPath))
		proc.RawSetString("pid", lua.LNumber(p.Window.PanePID))
		args := []lua.LValue{proc}
		if isKind {
			opts := L.NewTable()
			for k, v := range p.Process.CheckOptions {
				opts.RawSetString(k, host.ToLua(L, v))
			}
			args = append(args, opts)
		}
		name := "ready check of " + p.Process.Name
		t := h.rt.NewTask(name, fn, args, func(ret []lua.LValue, err error) {
			if err != nil {
				res <- checkResult{err: err}
				return
			}
			r := checkResult{}
			if len(ret) > 0 {
				r.ok = lua.LVAsBool(ret[0])
			}
			if len(ret) > 1 && ret[1] != lua.LNil {
				r.reason = ret[1].String()
			}
			res <- r
		})
		mu.Lock()
		task = t
		c := cancelled
		mu.Unlock()
		if c {
			t.Cancel()
		}
		h.rt.Start(t)
	})
	if !posted {
		return false, "", fmt.Errorf("the Lua host is closed")
	}
	select {
	case r := <-res:
		if r.err != nil {
			if host.Cancelled(r.err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return false, busyCheck(fn, p, isKind, time.Since(start)), nil
				}
				return false, "cancelled", nil
			}
			// Reported once with its traceback; a check that raises is a
			// failure of the start, not a reason to poll forever.
			h.rt.Post(func() { h.rt.OnError(r.err) })
			msg := r.err.Error()
			if i := strings.Index(msg, "\n"); i >= 0 {
				msg = msg[:i]
			}
			return false, msg, &engine.CheckError{Msg: msg}
		}
		return r.ok, r.reason, nil
	case <-ctx.Done():
		mu.Lock()
		cancelled = true
		t := task
		mu.Unlock()
		if t != nil {
			t.Cancel()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return false, busyCheck(fn, p, isKind, time.Since(start)), nil
		}
		return false, "", ctx.Err()
	}
}

// busyCheck is the reason of a check try that did not return in its
// time, said for the operator: which check, where, and the likely cause.
func busyCheck(fn *lua.LFunction, p engine.Probe, isKind bool, took time.Duration) string {
	what := "the ready_check function"
	if isKind {
		what = "the " + p.Process.CheckKind + " check"
	}
	return fmt.Sprintf("%s (%s:%d) did not return within %s (a loop that never waits? wait with launcher.sleep between tries)",
		what, fn.Proto.SourceName, fn.Proto.LineDefined, took.Round(100*time.Millisecond))
}
