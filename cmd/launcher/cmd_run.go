package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

func requestFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "param", Aliases: []string{"p", "params"}, Usage: "set a template parameter: `key:=value` (repeatable)"},
		&cli.StringSliceFlag{Name: "variant", Aliases: []string{"v", "variants"}, Usage: "select a variant `CHOICE` (repeatable)"},
	}
}

func jsonEventsFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print events as JSON lines (time, event, process, machine, message, exit_code…)"}
}

func (s *session) request(c *cli.Context) (config.Request, error) {
	params, err := parseParams(c.StringSlice("param"))
	if err != nil {
		return config.Request{}, err
	}
	return config.Request{Params: params, Variants: c.StringSlice("variant")}, nil
}

// oneProcess is the start of commands on one process: wiring, the name
// (checked against the config), the -p/-v request and its plan; every
// input error is exit 2 before anything runs.
func (s *session) oneProcess(c *cli.Context, cmd string) (e *engine.Engine, name string, req config.Request, plan *config.Plan, err error) {
	if c.NArg() != 1 {
		return nil, "", req, nil, usageErr("%s needs exactly one process name (got %d)", cmd, c.NArg())
	}
	if e, err = s.setup(c); err != nil {
		return nil, "", req, nil, err
	}
	name = c.Args().First()
	if err = s.checkNames([]string{name}); err != nil {
		return nil, "", req, nil, err
	}
	if req, err = s.request(c); err != nil {
		return nil, "", req, nil, err
	}
	if plan, err = s.cfg.Resolve([]string{name}, req); err != nil {
		return nil, "", req, nil, &exitError{code: exitUsage, err: err}
	}
	return e, name, req, plan, nil
}

// timeoutContext bounds the command's waits (readiness) by --timeout,
// when given; its acts (a stop, a spawn) finish, so a restart that timed
// out never leaves its process stopped.
func timeoutContext(c *cli.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Context)
	if d := c.Duration("timeout"); d > 0 {
		ctx = engine.WithWaitDeadline(ctx, time.Now().Add(d))
	}
	return ctx, cancel
}

// someProcesses is the start of commands on any number of processes.
func (s *session) someProcesses(c *cli.Context) (*engine.Engine, []string, error) {
	e, err := s.setup(c)
	if err != nil {
		return nil, nil, err
	}
	names := c.Args().Slice()
	return e, names, s.checkNames(names)
}

func (s *session) completeProcesses(c *cli.Context) {
	cfg, err := s.load(c)
	if err != nil {
		return
	}
	for _, n := range cfg.Names() {
		fmt.Fprintln(s.stdout, n)
	}
}

// watchEvents prints the events of the engine until the returned function
// is called (which flushes them): as progress lines or a live tree, or as
// JSON lines with --json.
func (s *session) watchEvents(c *cli.Context, e *engine.Engine) func() {
	if c.Bool("json") {
		enc := json.NewEncoder(s.stdout)
		unsub := e.Bus().Subscribe(nil, func(ev engine.Event) { _ = enc.Encode(ev) })
		return unsub
	}
	p := newProgress(s.stdout, newStyle(s.color), s.tty)
	unsub := e.Bus().Subscribe(nil, p.event)
	return func() {
		unsub()
		p.finish()
	}
}

func (s *session) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "start a process and its dependencies, each once ready",
		ArgsUsage: "PROC",
		Flags: withCommon(append(requestFlags(),
			&cli.DurationFlag{Name: "timeout", Usage: "give up waiting after `DURATION` (processes keep running)"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "then follow PROC's output and exit with its exit code"},
			&cli.IntFlag{Name: "ssh-retries", Usage: "when a machine is unreachable, retry the whole start `N` times, 1s apart (safe: start is idempotent)"},
			jsonEventsFlag(),
		)...),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			e, name, _, plan, err := s.oneProcess(c, "run")
			if err != nil {
				return err
			}
			ctx, cancel := timeoutContext(c)
			defer cancel()
			flush := s.watchEvents(c, e)
			tally := tallyStarts(e)
			defer tally.report(c, s, plan)
			err = e.StartPlan(ctx, plan)
			for try := 0; try < c.Int("ssh-retries") && executor.IsUnavailable(err) && ctx.Err() == nil; try++ {
				e.Bus().Publish(engine.Event{Kind: engine.Info, Message: fmt.Sprintf("a machine is unreachable; retrying (%d of %d) in 1s", try+1, c.Int("ssh-retries"))})
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				err = e.StartPlan(ctx, plan)
			}
			flush()
			if err != nil {
				return s.opError(c, err)
			}
			if !c.Bool("watch") {
				return nil
			}
			code, err := e.Follow(c.Context, name, func(line string) { fmt.Fprintln(s.stdout, line) })
			if err != nil {
				return s.opError(c, err)
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}

// opError turns an operation error into an exit status: its details were
// already printed as events.
func (s *session) opError(c *cli.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && c.Duration("timeout") > 0 && c.Context.Err() == nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("not ready after --timeout %s; processes that started keep running", c.Duration("timeout"))}
	}
	var pe *engine.ProcessError
	var ce *engine.ConflictError
	if engine.IsPlanRefusal(err) {
		return err // every problem, each on its line
	}
	if errors.As(err, &pe) || errors.As(err, &ce) {
		return &exitError{code: exitFailed, err: errors.New("failed: " + firstLine(err.Error()))}
	}
	return err
}

// startTally records which processes of a start are up (started, or
// found running), so that an interrupted start can say what keeps running
// and what was not started.
type startTally struct {
	mu    sync.Mutex
	up    map[string]bool
	unsub func()
}

func tallyStarts(e *engine.Engine) *startTally {
	t := &startTally{up: map[string]bool{}}
	t.unsub = e.Bus().Subscribe(nil, func(ev engine.Event) {
		if ev.Process != "" && (ev.Kind == engine.Started || ev.Kind == engine.Ready) {
			t.mu.Lock()
			t.up[ev.Process] = true
			t.mu.Unlock()
		}
	})
	return t
}

// report prints, after Ctrl-C, the plan's processes that are up and those
// that were not started.
func (t *startTally) report(c *cli.Context, s *session, plan *config.Plan) {
	t.unsub()
	if c.Context.Err() == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var up, not []string
	for _, r := range plan.Processes {
		if t.up[r.Name] {
			up = append(up, r.Name)
		} else {
			not = append(not, r.Name)
		}
	}
	fmt.Fprintf(s.stderr, "launcher: running (%d): %s\nlauncher: not started (%d): %s\n", len(up), nameList(up), len(not), nameList(not))
}

// nameList joins names, the first 20 of them.
func nameList(names []string) string {
	switch {
	case len(names) == 0:
		return "-"
	case len(names) > 20:
		return fmt.Sprintf("%s … and %d more", strings.Join(names[:20], ", "), len(names)-20)
	}
	return strings.Join(names, ", ")
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}

func (s *session) killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "stop processes (dependants first); a stop always ends",
		ArgsUsage: "PROC... | --all",
		Flags: withCommon(
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "stop every process of the config"},
			&cli.BoolFlag{Name: "force", Usage: "stop at once: SIGKILL to the whole run, no wait for stop_timeout"},
			&cli.BoolFlag{Name: "skip-unreachable", Usage: "with machines down, stop what needs none of them (a kill otherwise changes nothing)"},
			jsonEventsFlag(),
		),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			all := c.Bool("all")
			names := c.Args().Slice()
			if !all && len(names) == 0 {
				return usageErr("kill needs a process name, or --all to stop everything")
			}
			if all && len(names) > 0 {
				return usageErr("kill takes process names or --all, not both")
			}
			e, err := s.setup(c)
			if err != nil {
				return err
			}
			if err := s.checkNames(names); err != nil {
				return err
			}
			flush := s.watchEvents(c, e)
			err = e.Kill(c.Context, names, all, engine.KillOptions{Force: c.Bool("force"), SkipUnreachable: c.Bool("skip-unreachable")})
			flush()
			if err != nil {
				return s.opError(c, err)
			}
			return nil
		},
	}
}

func (s *session) restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "stop a process and start it again with the config's current command",
		ArgsUsage: "PROC",
		Flags: withCommon(append(requestFlags(),
			&cli.BoolFlag{Name: "force", Usage: "stop with SIGKILL at once"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up waiting after `DURATION`"},
			jsonEventsFlag(),
		)...),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			e, name, req, _, err := s.oneProcess(c, "restart")
			if err != nil {
				return err
			}
			ctx, cancel := timeoutContext(c)
			defer cancel()
			flush := s.watchEvents(c, e)
			err = e.Restart(ctx, name, req, engine.KillOptions{Force: c.Bool("force")})
			flush()
			if err != nil {
				return s.opError(c, err)
			}
			return nil
		},
	}
}
