package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/local"
	"github.com/robotlauncher/launcher/executor/tmux"
)

// selfArgv is how panes run this launcher again with the same config and
// tmux server.
func (s *session) selfArgv(c *cli.Context) []string {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	// The pane runs under the tmux server's environment, which may predate
	// this shell: what reaches machines is passed explicitly.
	argv := append([]string{"env"}, s.reachEnv()...)
	argv = append(argv, self)
	if opts, err := s.poolOptions(c, s.cfg); err == nil && opts.TmuxSocket != "" {
		argv = append(argv, "--tmux-socket", opts.TmuxSocket)
	}
	if s.acceptNew {
		argv = append(argv, "--accept-new-host-keys")
	}
	if path, err := filepath.Abs(s.cfg.File); err == nil {
		argv = append(argv, "--config", path)
	}
	return argv
}

func (s *session) monCommand() *cli.Command {
	return &cli.Command{
		Name:  "mon",
		Usage: "open a local tmux session with one pane per persistent process, attached to its window",
		Flags: withCommon(
			&cli.BoolFlag{Name: "attach", Aliases: []string{"r", "replace"}, Usage: "attach this terminal to the monitor session"},
		),
		Action: func(c *cli.Context) error {
			if _, err := s.setup(c); err != nil {
				return err
			}
			opts, err := s.poolOptions(c, s.cfg)
			if err != nil {
				return err
			}
			m, err := tmux.New(c.Context, local.Host{}, tmux.Options{Socket: opts.TmuxSocket, Config: opts.TmuxConfig})
			if err != nil {
				return err
			}
			var panes []tmux.MonitorPane
			for _, p := range s.cfg.Processes {
				if !p.Persistent {
					continue
				}
				argv := append(s.selfArgv(c), "attach", "--wait", p.Name)
				title := p.Name
				if p.Machine != executor.Local {
					title += " @ " + p.Machine
				}
				panes = append(panes, tmux.MonitorPane{Title: title, Argv: argv})
			}
			if len(panes) == 0 {
				return usageErr("the config has no persistent process to monitor")
			}
			name := s.cfg.Session + "_mon"
			owner, _ := filepath.Abs(s.cfg.File)
			if err := m.BuildMonitor(c.Context, name, owner, panes); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "monitor session %s: %d panes (tmux%s attach -t %s)\n", name, len(panes), socketHint(opts.TmuxSocket), name)
			if !c.Bool("attach") {
				return nil
			}
			argv := m.AttachArgv(name)
			path, err := exec.LookPath(argv[0])
			if err != nil {
				return err
			}
			return syscall.Exec(path, argv, os.Environ())
		},
	}
}

func socketHint(sock string) string {
	if sock == "" {
		return ""
	}
	return " -S " + sock
}

func (s *session) attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "show a process's tmux window in this terminal (used by mon panes)",
		ArgsUsage: "PROC",
		Hidden:    true,
		Flags: withCommon(
			&cli.BoolFlag{Name: "wait", Usage: "wait for the window to exist, and attach again after detaching"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("attach needs one process name")
			}
			if _, err := s.setup(c); err != nil {
				return err
			}
			name := c.Args().First()
			p, err := s.cfg.Lookup(name)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			view := fmt.Sprintf("%s-view-%s-%d", p.Session, strings.ReplaceAll(p.Name, ".", "_"), os.Getpid())
			waiting := ""
			for {
				sts, err := s.engine.WindowStates(c.Context, []string{name})
				if err != nil {
					return err
				}
				st := sts[0]
				if st.Window == nil {
					why := string(st.State)
					if st.Error != "" {
						why += ": " + st.Error
					}
					if !c.Bool("wait") {
						return &exitError{code: exitFailed, err: fmt.Errorf("%s is not running (%s)", name, why)}
					}
					if why != waiting {
						fmt.Fprintf(s.stdout, "waiting for %s on %s to start… (%s)\n", name, p.Machine, why)
						waiting = why
					}
					select {
					case <-c.Context.Done():
						return nil
					case <-time.After(time.Second):
					}
					continue
				}
				waiting = ""
				m, err := s.pool.Machine(c.Context, p.Machine)
				if err != nil {
					return err
				}
				t, ok := m.(executor.Terminal)
				a, ok2 := m.(executor.Attacher)
				if !ok || !ok2 {
					return fmt.Errorf("machine %s cannot attach a terminal", p.Machine)
				}
				_, err = t.RunTerminal(c.Context, executor.Command{Args: a.AttachCommand(p.Session, st.Window.ID, view)}, os.Stdin, os.Stdout, os.Stderr)
				if err != nil && c.Context.Err() == nil {
					fmt.Fprintf(s.stderr, "attach: %v\n", err)
				}
				if !c.Bool("wait") || c.Context.Err() != nil {
					return nil
				}
				select {
				case <-c.Context.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
}
