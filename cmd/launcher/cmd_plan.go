package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/docker"
	"github.com/robotlauncher/launcher/executor/shell"
)

// commandLine is what runs r on its target, as one line an operator can
// paste into a terminal (launcher itself passes the env through a file and
// frames the run with log lines; the effect is this).
func commandLine(r *config.Resolved) string {
	return onMachine(r.Machine, inTarget(r, r.Cmd, true), true)
}

// readyCommandLine is the same for r's ready check.
func readyCommandLine(r *config.Resolved) string {
	if r.Docker != "" {
		return onMachine(r.Machine, inTarget(r, r.ReadyCheck, false), false)
	}
	return onMachine(r.Machine, withEnv(r, []string{"bash", "-c", r.ReadyCheck}), false)
}

func inTarget(r *config.Resolved, script string, tty bool) []string {
	if r.Docker == "" {
		return withEnv(r, []string{"bash", "-ic", script})
	}
	var env []executor.EnvVar
	for _, e := range r.Env {
		env = append(env, executor.EnvVar{Name: e.Name})
	}
	argv := docker.ExecArgv(r.Docker, docker.ExecOptions{TTY: tty, Env: env, Cwd: r.Cwd, Script: script})
	return withEnv(&config.Resolved{Env: r.Env}, argv)
}

// withEnv prefixes argv with `env K=V…` and a `cd` when r has them.
func withEnv(r *config.Resolved, argv []string) []string {
	var pre []string
	if r.Cwd != "" {
		pre = append(pre, "env", "-C", r.Cwd)
	}
	if len(r.Env) > 0 {
		if len(pre) == 0 {
			pre = append(pre, "env")
		}
		for _, e := range r.Env {
			pre = append(pre, e.Name+"="+e.Value)
		}
	}
	return append(pre, argv...)
}

// onMachine wraps argv in ssh for a remote machine (user@host:port or an
// ssh_config alias).
func onMachine(machine string, argv []string, tty bool) string {
	if machine == "" || machine == executor.Local {
		return shell.Join(argv)
	}
	ssh := []string{"ssh"}
	if tty {
		ssh = append(ssh, "-t")
	}
	host := machine
	if i := strings.LastIndex(machine, ":"); i > 0 {
		if _, err := strconv.Atoi(machine[i+1:]); err == nil {
			ssh = append(ssh, "-p", machine[i+1:])
			host = machine[:i]
		}
	}
	ssh = append(ssh, host, shell.Join(argv))
	return shell.Join(ssh)
}

// planJSON is `plan --json`: the resolved processes with the exact
// command lines they run.
func planJSON(cfg *config.Config, plan *config.Plan, op engine.OpPlan) []byte {
	procs := make([]map[string]any, 0, len(plan.Processes))
	for _, r := range plan.Processes {
		var m map[string]any
		b, _ := json.Marshal(r)
		_ = json.Unmarshal(b, &m)
		m["command_line"] = commandLine(r)
		if r.ReadyCheck != "" {
			m["ready_command_line"] = readyCommandLine(r)
		}
		procs = append(procs, m)
	}
	b, _ := json.MarshalIndent(map[string]any{"roots": plan.Roots, "processes": procs, "op": op, "machines": op.Machines(cfg)}, "", "  ")
	return b
}

func (s *session) planCommand() *cli.Command {
	return &cli.Command{
		Name:      "plan",
		Usage:     "show the resolved commands, machines and start order, without running anything",
		ArgsUsage: "PROC",
		Flags: withCommon(append(requestFlags(), &cli.BoolFlag{Name: "json", Usage: "print the plan as JSON"},
			&cli.StringFlag{Name: "op", Value: "run", Usage: "the operation to plan: `run`, kill or restart (kill and restart read the processes' states now)"})...),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("plan needs exactly one process name")
			}
			cfg, err := s.load(c)
			if err != nil {
				return err
			}
			if err := s.checkNames(c.Args().Slice()); err != nil {
				return err
			}
			req, err := s.request(c)
			if err != nil {
				return err
			}
			plan, err := cfg.Resolve(c.Args().Slice(), req)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			op := engine.PlanStart(cfg, plan)
			switch c.String("op") {
			case "run":
			case "kill", "restart":
				e, err := s.setup(c)
				if err != nil {
					return err
				}
				if op, err = e.Plan(c.Context, c.String("op"), c.Args().Slice(), req); err != nil {
					return err
				}
			default:
				return usageErr("--op %q: write run, kill or restart", c.String("op"))
			}
			if c.Bool("json") {
				fmt.Fprintln(s.stdout, string(planJSON(cfg, plan, op)))
				return nil
			}
			st := newStyle(s.color)
			fmt.Fprintf(s.stdout, "%s %s:\n", op.Op, strings.Join(c.Args().Slice(), " "))
			if len(op.Stop) > 0 {
				fmt.Fprintf(s.stdout, "  stop:  %s\n", strings.Join(op.Stop, ", "))
			}
			if len(op.Start) > 0 {
				fmt.Fprintf(s.stdout, "  start: %s\n", strings.Join(op.Start, ", "))
			}
			fmt.Fprintf(s.stdout, "  machines: %s\n", strings.Join(op.Machines(cfg), ", "))
			if op.Op == "kill" {
				return nil
			}
			fmt.Fprintf(s.stdout, "start order for %s:\n", strings.Join(plan.Roots, ", "))
			for i, r := range plan.Processes {
				where := r.Machine
				if r.Docker != "" {
					where += ", container " + r.Docker
				}
				kind := ""
				if !r.Persistent {
					kind = ", one-shot"
				}
				fmt.Fprintf(s.stdout, "%3d. %s  (%s, session %s%s)\n", i+1, st.proc(r.Name), where, r.Session, kind)
				if len(r.Depends) > 0 {
					fmt.Fprintf(s.stdout, "     after: %s\n", strings.Join(r.Depends, ", "))
				}
				fmt.Fprintf(s.stdout, "     cmd:   %s\n", r.Cmd)
				fmt.Fprintf(s.stdout, "     runs:  %s\n", commandLine(r))
				if r.ReadyCheck != "" {
					fmt.Fprintf(s.stdout, "     ready: %s\n", r.ReadyCheck)
					fmt.Fprintf(s.stdout, "     check: %s\n", readyCommandLine(r))
				}
				if r.CheckKind != "" {
					fmt.Fprintf(s.stdout, "     ready: check %s %v\n", r.CheckKind, r.CheckOptions)
				}
				if len(r.Variants) > 0 {
					fmt.Fprintf(s.stdout, "     variants: %s\n", strings.Join(r.Variants, ", "))
				}
			}
			return nil
		},
	}
}

func (s *session) validateCommand() *cli.Command {
	return &cli.Command{
		Name:  "validate",
		Usage: "check the config and report every problem with file:line",
		Flags: withCommon(),
		Action: func(c *cli.Context) error {
			if _, err := s.setup(c); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "%s: OK, %d processes in session %s\n", s.cfg.File, len(s.cfg.Processes), s.cfg.Session)
			return nil
		},
	}
}

const bashCompletion = `# launcher bash completion: source <(launcher completion bash)
_launcher_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -F _launcher_complete launcher
`

const zshCompletion = `#compdef launcher
# launcher zsh completion: source <(launcher completion zsh)
_launcher() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _launcher launcher
`

func (s *session) completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash", "":
				fmt.Fprint(s.stdout, bashCompletion)
			case "zsh":
				fmt.Fprint(s.stdout, zshCompletion)
			default:
				return usageErr("completion supports bash and zsh, not %q", c.Args().First())
			}
			return nil
		},
	}
}
