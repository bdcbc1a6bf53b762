package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/robotlauncher/launcher/cmd/launcher/api"
	"github.com/robotlauncher/launcher/engine"
)

func (s *session) statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the state of processes: PROCESS SESSION MACHINE STATE PID EXIT",
		ArgsUsage: "[PROC...]",
		Flags: withCommon(
			&cli.BoolFlag{Name: "json", Usage: "print {\"processes\": [...]} (a stable format)"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh every second until Ctrl-C"},
			&cli.BoolFlag{Name: "pstree", Aliases: []string{"t"}, Usage: "show each process's tree with RSS and CPU"},
		),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			e, names, err := s.someProcesses(c)
			if err != nil {
				return err
			}
			st := newStyle(s.color)
			render := func() (string, error) {
				if c.Bool("pstree") {
					trees, err := e.Trees(c.Context, names)
					if err != nil {
						return "", err
					}
					if c.Bool("json") {
						b, _ := json.MarshalIndent(map[string]any{"trees": trees}, "", "  ")
						return string(b) + "\n", nil
					}
					return formatTrees(trees, st), nil
				}
				rows, err := e.Status(c.Context, names)
				if err != nil {
					return "", err
				}
				if c.Bool("json") {
					b, _ := json.MarshalIndent(api.ViewOf(rows), "", "  ")
					return string(b) + "\n", nil
				}
				return statusTable(rows, st), nil
			}
			if !c.Bool("watch") {
				out, err := render()
				if err != nil {
					return err
				}
				fmt.Fprint(s.stdout, out)
				return nil
			}
			if s.tty {
				fmt.Fprint(s.stdout, "\x1b[2J")
			}
			for {
				out, err := render()
				if err != nil {
					if c.Context.Err() != nil {
						return nil
					}
					return err
				}
				frame := "Updated: " + time.Now().Format("2006-01-02 15:04:05") + "\n" + out + "\n"
				if s.tty {
					frame = fitTerminal(frame, s.stdout)
					fmt.Fprint(s.stdout, "\x1b[H"+frame+"\x1b[J")
				} else {
					fmt.Fprint(s.stdout, frame)
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

// fitTerminal cuts a frame to the terminal's height.
func fitTerminal(frame string, w any) string {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return frame
	}
	_, h, err := term.GetSize(int(f.Fd()))
	if err != nil || h <= 1 {
		return frame
	}
	lines := strings.Split(strings.TrimRight(frame, "\n"), "\n")
	if len(lines) <= h {
		return frame
	}
	cut := len(lines) - (h - 1)
	return strings.Join(lines[:h-1], "\n") + "\n... truncated " + strconv.Itoa(cut) + " lines ..."
}

func (s *session) watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "follow the logs of processes, merged and [proc]-prefixed",
		ArgsUsage: "[PROC...]",
		Flags: withCommon(
			&cli.StringFlag{Name: "num-lines", Aliases: []string{"n"}, Value: "10", Usage: "start with the last `N` lines of each log (+1: the whole log)"},
		),
		BashComplete: s.completeProcesses,
		Action: func(c *cli.Context) error {
			e, names, err := s.someProcesses(c)
			if err != nil {
				return err
			}
			n, err := parseNumLines(c.String("num-lines"))
			if err != nil {
				return err
			}
			st := newStyle(s.color)
			err = e.Watch(c.Context, names, n, func(l engine.LogLine) {
				if l.Err != nil {
					fmt.Fprintf(s.stderr, "[%s] %v\n", st.proc(l.Process), l.Err)
					return
				}
				fmt.Fprintf(s.stdout, "[%s] %s\n", st.proc(l.Process), l.Line)
			})
			if c.Context.Err() != nil {
				return nil
			}
			return err
		},
	}
}

// parseNumLines reads -n: N (last N lines) or +1 (the whole log), as
// concert_launcher and tail accept them.
func parseNumLines(v string) (int, error) {
	if v == "+1" || v == "+0" || v == "all" {
		return 1 << 30, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, usageErr("-n expects a number of lines or +1, got %q", v)
	}
	return n, nil
}

// formatTree renders a tree as indented lines:
// "PID: 123 (roscore -p 11311) RAM: 12.34 MB CPU: 1.0%".
// formatTrees is `status --pstree`: each running process's tree, under
// its name and machine.
func formatTrees(trees []engine.Tree, st *style) string {
	var b strings.Builder
	for _, t := range trees {
		fmt.Fprintf(&b, "[%s] on %s\n", st.proc(t.Process), t.Machine)
		if t.Error != "" {
			fmt.Fprintf(&b, "  %s\n", t.Error)
			continue
		}
		for _, l := range strings.Split(strings.TrimRight(formatTree(t.Root), "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	if len(trees) == 0 {
		b.WriteString("no process is running\n")
	}
	return b.String()
}

func formatTree(n *engine.TreeNode) string {
	var b strings.Builder
	var walk func(n *engine.TreeNode, depth int)
	walk = func(n *engine.TreeNode, depth int) {
		fmt.Fprintf(&b, "%sPID: %d (%s) RAM: %.2f MB CPU: %.1f%%\n", strings.Repeat("  ", depth), n.PID, n.Args, float64(n.RSSKiB)/1024, n.CPU)
		for _, c := range n.Children {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}
