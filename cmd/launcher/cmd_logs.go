package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor"
)

// logsCommand is `launcher logs`: a process's output across rotations and
// runs, read on its machine.
func (s *session) logsCommand() *cli.Command {
	return &cli.Command{
		Name:  "logs",
		Usage: "print a process's log across rotations and runs (from its machine)",
		Description: "Prints NAME.log.N … NAME.log.1 and NAME.log, oldest first, as the log writer on the process's machine\n" +
			"kept them. --runs lists the runs the log holds; --run ID prints one of them.",
		ArgsUsage: "PROC",
		Flags: withCommon(
			&cli.StringFlag{Name: "run", Usage: "only the output of run `ID` (see --runs)"},
			&cli.DurationFlag{Name: "since", Usage: "only lines of the last `DURATION` (e.g. 10m, 2h)"},
			&cli.IntFlag{Name: "num-lines", Aliases: []string{"n"}, Usage: "only the last `N` lines (0: all)"},
			&cli.BoolFlag{Name: "runs", Usage: "list the runs in the log: id, start, end, exit code"},
			&cli.BoolFlag{Name: "json", Usage: "with --runs: print them as JSON"},
		),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("logs takes one process name (launcher logs PROC)")
			}
			if c.Int("num-lines") < 0 || c.Duration("since") < 0 {
				return usageErr("-n and --since must not be negative")
			}
			if c.Bool("runs") && (c.IsSet("run") || c.IsSet("num-lines")) {
				return usageErr("--runs lists the runs: it takes neither --run nor -n")
			}
			if c.Bool("json") && !c.Bool("runs") {
				return usageErr("--json goes with --runs")
			}
			e, names, err := s.someProcesses(c)
			if err != nil {
				return err
			}
			name := names[0]
			if c.Bool("runs") {
				runs, err := e.Runs(c.Context, name)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if runs == nil {
						runs = []engine.RunInfo{}
					}
					enc := json.NewEncoder(s.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(map[string]any{"process": name, "runs": runs})
				}
				tw := tabwriter.NewWriter(s.stdout, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "RUN\tSTARTED\tENDED\tEXIT")
				for _, r := range runs {
					ended, code := r.Ended, fmt.Sprint(r.ExitCode)
					if ended == "" {
						ended, code = "-", "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Tag, r.Started, ended, code)
				}
				return tw.Flush()
			}
			q := executor.LogQuery{Run: c.String("run"), Since: c.Duration("since"), Last: c.Int("num-lines")}
			if q.Since > 0 && q.Since < time.Second {
				q.Since = time.Second
			}
			n := 0
			err = e.Logs(c.Context, name, q, func(line string) {
				n++
				fmt.Fprintln(s.stdout, line)
			})
			if err == nil && n == 0 && q.Run != "" {
				return &exitError{code: 1, err: fmt.Errorf("%s: no run %q in its log (launcher logs --runs %s lists them)", name, q.Run, name)}
			}
			return err
		},
	}
}
