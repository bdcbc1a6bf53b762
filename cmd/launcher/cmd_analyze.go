package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine"
)

// analyzeCommand is `launcher analyze`: how long each process of the last
// bring-up took to become ready, and what held a process up.
func (s *session) analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:  "analyze",
		Usage: "time from start to ready of each process; with PROC, its critical chain",
		Description: "Reads the start and ready times the windows of the current runs carry. Without PROC: every process, in\n" +
			"the order they started, with the time each took to become ready. With PROC, as systemd-analyze\n" +
			"critical-chain: PROC, the dependency it waited for last, that one's, and so on; @ is when each\n" +
			"became ready (from the chain's first start), + how long its start took.",
		ArgsUsage:    "[PROC]",
		Flags:        withCommon(&cli.BoolFlag{Name: "json", Usage: "print the timings (and the chain) as JSON"}),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageErr("analyze takes at most one process name")
			}
			e, names, err := s.someProcesses(c)
			if err != nil {
				return err
			}
			ts, err := e.Timings(c.Context)
			if err != nil {
				return err
			}
			var chain []engine.ChainLink
			if len(names) == 1 {
				chain = engine.CriticalChain(ts, names[0])
				if chain == nil {
					return &exitError{code: 1, err: fmt.Errorf("%s has not run (no window): nothing to analyze", names[0])}
				}
			}
			if c.Bool("json") {
				out := map[string]any{"processes": timingsJSON(ts)}
				if chain != nil {
					links := make([]map[string]any, 0, len(chain))
					for _, l := range chain {
						link := map[string]any{"process": l.Process, "ready": l.Ready, "at": nil, "took": nil}
						if l.Ready {
							link["at"], link["took"] = l.At.Seconds(), l.Took.Seconds()
						}
						links = append(links, link)
					}
					out["critical_chain"] = links
				}
				enc := json.NewEncoder(s.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if chain != nil {
				fmt.Fprintln(s.stdout, "@ when each became ready (from the chain's first start), + how long its start took:")
				fmt.Fprintln(s.stdout)
				for i, l := range chain {
					at, took := "@"+secs(l.At), "+"+secs(l.Took)
					if !l.Ready {
						at, took = "(not ready)", ""
					}
					prefix := ""
					if i > 0 {
						prefix = strings.Repeat("  ", i-1) + "└─"
					}
					fmt.Fprintln(s.stdout, strings.TrimRight(fmt.Sprintf("%s%s %s %s", prefix, l.Process, at, took), " "))
				}
				return nil
			}
			if len(ts) == 0 {
				fmt.Fprintln(s.stdout, "no process has run: nothing to analyze")
				return nil
			}
			t0 := ts[0].Started
			tw := tabwriter.NewWriter(s.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "PROCESS\tMACHINE\tSTARTED\tREADY AFTER")
			for _, t := range ts {
				took := "-"
				if d := t.Took(); d > 0 || !t.Ready.IsZero() {
					took = secs(d)
				}
				fmt.Fprintf(tw, "%s\t%s\t+%s\t%s\n", t.Process, t.Machine, secs(t.Started.Sub(t0)), took)
			}
			return tw.Flush()
		},
	}
}

// secs formats a duration as seconds with milliseconds ("1.204s").
func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func timingsJSON(ts []engine.Timing) []map[string]any {
	out := make([]map[string]any, 0, len(ts))
	for _, t := range ts {
		row := map[string]any{"process": t.Process, "machine": t.Machine, "state": t.State, "started": t.Started.Format(time.RFC3339Nano),
			"depends": t.Depends, "ready": nil, "took": nil}
		if !t.Ready.IsZero() {
			row["ready"], row["took"] = t.Ready.Format(time.RFC3339Nano), t.Took().Seconds()
		}
		if t.Depends == nil {
			row["depends"] = []string{}
		}
		out = append(out, row)
	}
	return out
}
