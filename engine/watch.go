package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// LogLine is one line of a process's log (Err set: a problem while
// following it, the follow goes on).
type LogLine struct {
	Process string
	Line    string
	Err     error
}

// Watch follows the logs of the named processes (all when empty): the last
// n lines of each, then every new line, until ctx ends. fn is called from
// one goroutine at a time. A machine that drops is re-dialled and each log
// resumes at the first byte not yet delivered.
func (e *Engine) Watch(ctx context.Context, names []string, n int, fn func(LogLine)) error {
	procs, err := e.selectProcs(names)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if err := e.refuseConflicts(ctx, names); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	deliver := func(l LogLine) {
		mu.Lock()
		defer mu.Unlock()
		fn(l)
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.watchOne(ctx, p, n, deliver)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (e *Engine) watchOne(ctx context.Context, p *config.Process, n int, deliver func(LogLine)) {
	var m executor.Machine
	var err error
	for {
		m, _, err = e.machine(ctx, p.Machine)
		if err == nil {
			break
		}
		deliver(LogLine{Process: p.Name, Err: err})
		if sleepCtx(ctx, 2*time.Second) != nil {
			return
		}
	}
	var path string
	for {
		if path, err = m.LogPath(ctx, p.Session, p.Name); err == nil {
			break
		}
		deliver(LogLine{Process: p.Name, Err: err})
		if sleepCtx(ctx, 2*time.Second) != nil {
			return
		}
	}
	var size int64
	var head []string
	for {
		size, head, err = logHead(ctx, m, path, n)
		if err == nil {
			break
		}
		deliver(LogLine{Process: p.Name, Err: err})
		if sleepCtx(ctx, 2*time.Second) != nil {
			return
		}
		if m, _, err = e.machine(ctx, p.Machine); err != nil {
			continue
		}
	}
	for _, l := range head {
		deliver(LogLine{Process: p.Name, Line: l})
	}
	lastErr := ""
	f := &follower{dial: e.dialer(p.Machine), path: path, offset: size, onError: func(err error) {
		if err.Error() != lastErr {
			lastErr = err.Error()
			deliver(LogLine{Process: p.Name, Err: err})
		}
	}}
	_ = f.run(ctx, func(line string) bool {
		lastErr = ""
		deliver(LogLine{Process: p.Name, Line: line})
		return true
	})
}

// Follow prints the new output of name (from now on) until it exits, and
// returns its exit code. It is `run -w`.
func (e *Engine) Follow(ctx context.Context, name string, fn func(line string)) (int, error) {
	p, err := e.conf().Lookup(name)
	if err != nil {
		return 0, err
	}
	m, snaps, err := e.machine(ctx, p.Machine)
	if err != nil {
		return 0, err
	}
	snap, err := snaps.get(ctx, time.Now())
	if err != nil {
		return 0, err
	}
	w, err := findWindow(snap, p)
	if err != nil {
		return 0, err
	}
	if w == nil {
		return 0, &ProcessError{Process: name, Msg: "is not running"}
	}
	path := w.Marks.Log
	if path == "" {
		if path, err = m.LogPath(ctx, p.Session, p.Name); err != nil {
			return 0, err
		}
	}
	size, _, err := logHead(ctx, m, path, 0)
	if err != nil {
		return 0, err
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	sawExit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		f := &follower{dial: e.dialer(p.Machine), path: path, offset: size}
		_ = f.run(fctx, func(line string) bool {
			if executor.IsExitLine(line, w.Marks.Tag) {
				once.Do(func() { close(sawExit) })
				return false
			}
			if !executor.IsLauncherLine(line) {
				fn(line)
			}
			return true
		})
	}()
	if !w.Dead {
		if err := e.waitDeadSlow(ctx, snaps, w.ID); err != nil {
			return 0, err
		}
	}
	select {
	case <-sawExit:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	stop()
	<-done
	snap, err = snaps.get(ctx, time.Now())
	if err != nil {
		return 0, err
	}
	cur := windowByID(snap, w.ID)
	if cur == nil || !cur.ExitKnown {
		return 1, &ProcessError{Process: name, Msg: "its window was closed; exit code unknown"}
	}
	return cur.ExitCode, nil
}

// waitDeadSlow waits for a window to die, polling at most every 250ms:
// for long waits (run -w, scripts) where a quarter second is soon enough.
func (e *Engine) waitDeadSlow(ctx context.Context, snaps *snapshots, id string) error {
	pl := newPoller(0)
	pl.max = 250 * time.Millisecond
	for {
		snap, err := snaps.get(ctx, time.Now())
		if err == nil {
			if w := windowByID(snap, id); w == nil || w.Dead {
				return nil
			}
		} else if !executor.IsUnavailable(err) {
			return err
		}
		if err := sleepCtx(ctx, pl.next()); err != nil {
			return err
		}
	}
}

// TreeNode is one process in a process tree.
type TreeNode struct {
	PID      int         `json:"pid"`
	RSSKiB   int64       `json:"rss_kib"`
	CPU      float64     `json:"cpu"`
	Args     string      `json:"args"`
	Children []*TreeNode `json:"children,omitempty"`
}

// Tree is the process tree of one process's window.
type Tree struct {
	Process string    `json:"process"`
	Machine string    `json:"machine"`
	Root    *TreeNode `json:"root,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// MachineLoad is a machine's load average, as the dashboard shows it.
type MachineLoad struct {
	Machine string     `json:"machine"`
	Load    [3]float64 `json:"load"` // 1, 5 and 15 minutes
	CPUs    int        `json:"cpus,omitempty"`
}

// Trees reads the process trees of the named processes (all when empty)
// that run now, with one `ps` per machine, read on that machine.
func (e *Engine) Trees(ctx context.Context, names []string) ([]Tree, error) {
	trees, _, err := e.TreesAndLoads(ctx, names)
	return trees, err
}

// TreesAndLoads is Trees with the load of each machine read (in the same
// command as its process table, where the machine can).
func (e *Engine) TreesAndLoads(ctx context.Context, names []string) ([]Tree, []MachineLoad, error) {
	var loads []MachineLoad
	sts, err := e.WindowStates(ctx, names)
	if err != nil {
		return nil, nil, err
	}
	if len(names) > 0 {
		if err := conflictIn(sts); err != nil {
			return nil, nil, err
		}
	}
	tables := map[string][]executor.ProcessInfo{}
	errs := map[string]error{}
	var out []Tree
	for _, st := range sts {
		if st.Window == nil || st.Window.Dead {
			continue
		}
		if _, ok := tables[st.Machine]; !ok && errs[st.Machine] == nil {
			m, _, err := e.machine(ctx, st.Machine)
			if lr, ok := m.(executor.LoadReader); ok && err == nil {
				var l *executor.Load
				if tables[st.Machine], l, err = lr.ProcessesAndLoad(ctx); l != nil {
					loads = append(loads, MachineLoad{Machine: st.Machine, Load: [3]float64{l.One, l.Five, l.Fifteen}, CPUs: l.CPUs})
				}
			} else if err == nil {
				tables[st.Machine], err = m.Processes(ctx)
			}
			if err != nil {
				errs[st.Machine] = err
			}
		}
		t := Tree{Process: st.Process, Machine: st.Machine}
		if err := errs[st.Machine]; err != nil {
			t.Error = err.Error()
		} else {
			t.Root = buildTree(tables[st.Machine], st.Window.PanePID)
			if t.Root == nil {
				t.Error = fmt.Sprintf("pid %d not found", st.Window.PanePID)
			} else if p := e.conf().Process(st.Process); p != nil {
				// The pane's bash runs launcher's prologue: show the user's
				// command instead of its text; its children are the user's.
				t.Root.Args = "bash -ic " + oneLine(p.Cmd, 160)
			}
		}
		out = append(out, t)
	}
	return out, loads, nil
}

func buildTree(ps []executor.ProcessInfo, root int) *TreeNode {
	children := map[int][]executor.ProcessInfo{}
	var self *executor.ProcessInfo
	for i := range ps {
		children[ps[i].PPID] = append(children[ps[i].PPID], ps[i])
		if ps[i].PID == root {
			self = &ps[i]
		}
	}
	if self == nil {
		return nil
	}
	var build func(p executor.ProcessInfo, depth int) *TreeNode
	build = func(p executor.ProcessInfo, depth int) *TreeNode {
		n := &TreeNode{PID: p.PID, RSSKiB: p.RSSKiB, CPU: p.CPU, Args: p.Args}
		if depth > 64 {
			return n
		}
		kids := children[p.PID]
		sort.Slice(kids, func(i, j int) bool { return kids[i].PID < kids[j].PID })
		for _, c := range kids {
			n.Children = append(n.Children, build(c, depth+1))
		}
		return n
	}
	return build(*self, 0)
}

// oneLine shortens a command to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// refuseConflicts fails with the ConflictError of the first named process
// whose window launcher does not own: commands aimed at it refuse, like run
// and kill do, instead of showing nothing.
func (e *Engine) refuseConflicts(ctx context.Context, names []string) error {
	sts, err := e.WindowStates(ctx, names)
	if err != nil {
		return err
	}
	return conflictIn(sts)
}

func conflictIn(sts []Status) error {
	for _, st := range sts {
		if st.State == StateConflict {
			return &ConflictError{Process: st.Process, Session: st.Session, Machine: st.Machine, Ambiguous: strings.Contains(st.Error, "ambiguous")}
		}
	}
	return nil
}
