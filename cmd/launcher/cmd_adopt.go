package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine"
)

// adoptCommand is `launcher adopt`: switching a live robot over from
// concert_launcher (or any tool that named a window like a process)
// without restarting anything.
func (s *session) adoptCommand() *cli.Command {
	return &cli.Command{
		Name:  "adopt",
		Usage: "take over windows concert_launcher (or another tool) started, without restarting them",
		Description: "The process keeps running with the same pid; its window becomes launcher's, and its output goes to\n" +
			"the process's log from now on (adopt says where the earlier output is). Then status, kill, restart,\n" +
			"watch and logs work on it. Every named process must have one such window and every machine must\n" +
			"answer, or nothing changes.",
		ArgsUsage: "PROC... | --all",
		Flags: withCommon(
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "every process of the config that has such a window"},
			&cli.BoolFlag{Name: "json", Usage: "print what was adopted as JSON"},
		),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			all := c.Bool("all")
			e, names, err := s.someProcesses(c)
			if err != nil {
				return err
			}
			if !all && len(names) == 0 {
				return usageErr("adopt needs a process name, or --all for every window another tool started")
			}
			if all && len(names) > 0 {
				return usageErr("adopt takes process names or --all, not both")
			}
			got, err := e.Adopt(c.Context, names, all)
			if c.Bool("json") {
				if got == nil {
					got = []engine.Adopted{}
				}
				enc := json.NewEncoder(s.stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(map[string]any{"adopted": got})
			} else {
				for _, a := range got {
					fmt.Fprintln(s.stdout, adoptedLine(a))
				}
				if err == nil && len(got) == 0 {
					fmt.Fprintln(s.stdout, "nothing to adopt: no process of the config has a window another tool started")
				}
			}
			if err != nil {
				return s.opError(c, err)
			}
			return nil
		},
	}
}

func adoptedLine(a engine.Adopted) string {
	by := "not started by launcher"
	if a.Foreign != "" {
		by = "started by " + a.Foreign
	}
	if a.PID == 0 {
		code := "its process had ended"
		if a.ExitCode != nil {
			code = fmt.Sprintf("its process had ended with code %d", *a.ExitCode)
		}
		return fmt.Sprintf("adopted %s (%s, %s): `launcher run %s` starts it again in its window", a.Process, by, code, a.Process)
	}
	state := "RUNNING (its ready check has not passed yet: `launcher run` waits for it)"
	if a.Ready {
		state = "READY"
	}
	line := fmt.Sprintf("adopted %s (%s, pid %d kept running): %s; its output goes to %s from now on", a.Process, by, a.PID, state, a.Log)
	if a.Output != "" {
		line += ", the earlier output is in " + a.Output
	}
	return line
}
