package tmux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AttachCommand returns the argv that shows one window in a terminal. It
// opens a grouped view session (sharing the windows of session, with its own
// current window) that tmux destroys when the terminal detaches, so several
// viewers never fight over the session's current window.
func (m *Machine) AttachCommand(session, windowID, view string) []string {
	argv := []string{"env", "-u", "TMUX"}
	argv = append(argv, m.tmux("new-session", "-t", "="+session+":", "-s", view, ";",
		"set-option", "-t", "="+view+":", "destroy-unattached", "on", ";",
		"set-option", "-t", "="+view+":", "@launcher_view", "1", ";",
		"select-window", "-t", windowID)...)
	return argv
}

// MonitorPane is one pane of a monitor session.
type MonitorPane struct {
	Title string
	Argv  []string
}

// PanesPerWindow bounds the panes of one monitor window (a 3×2 grid).
const PanesPerWindow = 6

// BuildMonitor (re)creates session name with one pane per entry, tiled, at
// most PanesPerWindow per window, each titled. A previous monitor session
// of that name built for the same owner (the config file) is replaced; any
// other session of that name is never touched: BuildMonitor refuses.
func (m *Machine) BuildMonitor(ctx context.Context, name, owner string, panes []MonitorPane) error {
	if len(panes) == 0 {
		return fmt.Errorf("nothing to monitor")
	}
	// A server still exiting (its last session just closed) answers
	// "server exited unexpectedly" to the check or to the build; nothing
	// was made on it, so both are asked again of the next server.
	for attempt := 0; ; attempt++ {
		err := m.buildMonitorOnce(ctx, name, owner, panes)
		if !errors.Is(err, errServerGone) || attempt >= 20 {
			return err
		}
		t := time.NewTimer(time.Duration(min(attempt+1, 8)) * 25 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (m *Machine) buildMonitorOnce(ctx context.Context, name, owner string, panes []MonitorPane) error {
	res, err := m.run(ctx, []string{"show-options", "-v", "-t", "=" + name + ":", "@launcher_mon"})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 && serverGone(string(res.Stderr)) {
		return errServerGone
	}
	switch cur := strings.TrimSpace(string(res.Stdout)); {
	case res.ExitCode != 0 && (noServer(res.Stderr) || strings.Contains(string(res.Stderr), "no such session")):
		// No such session: nothing to replace.
	case res.ExitCode != 0:
		return fmt.Errorf("cannot tell whether tmux session %s exists on %s: %s", name, m.Machine(), strings.TrimSpace(string(res.Stderr)))
	case cur == owner:
		res, err := m.run(ctx, []string{"kill-session", "-t", "=" + name + ":"})
		if err != nil {
			return fmt.Errorf("cannot replace the monitor session %s: %w", name, err)
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("cannot replace the monitor session %s: %s", name, strings.TrimSpace(string(res.Stderr)))
		}
	case cur != "":
		return fmt.Errorf("tmux session %s is the monitor of another config (%s): close it, or run mon with that config", name, cur)
	default:
		return fmt.Errorf("tmux session %s exists and was not created by launcher mon: rename or close it (launcher never destroys what it does not own)", name)
	}
	var cmds [][]string
	for i, p := range panes {
		win := fmt.Sprintf("mon%d", i/PanesPerWindow+1)
		target := "=" + name + ":=" + win
		switch {
		case i == 0:
			cmds = append(cmds,
				append([]string{"new-session", "-d", "-s", name, "-n", win, "-x", "200", "-y", "50", "--"}, p.Argv...),
				// A pane that fails keeps its message on screen.
				[]string{"set-option", "-w", "-t", target, "remain-on-exit", "on"},
				[]string{"set-option", "-t", "=" + name + ":", "status-style", "bg=magenta"},
				[]string{"set-option", "-t", "=" + name + ":", "mouse", "on"},
				[]string{"set-option", "-t", "=" + name + ":", "@launcher_view", "1"},
				[]string{"set-option", "-t", "=" + name + ":", "@launcher_mon", owner},
				[]string{"set-option", "-w", "-t", target, "pane-border-status", "top"})
		case i%PanesPerWindow == 0:
			cmds = append(cmds,
				append([]string{"new-window", "-d", "-t", "=" + name + ":", "-n", win, "--"}, p.Argv...),
				[]string{"set-option", "-w", "-t", target, "remain-on-exit", "on"},
				[]string{"set-option", "-w", "-t", target, "pane-border-status", "top"})
		default:
			cmds = append(cmds,
				append([]string{"split-window", "-t", target, "--"}, p.Argv...),
				[]string{"select-layout", "-t", target, "tiled"})
		}
		cmds = append(cmds, []string{"select-pane", "-t", target, "-T", p.Title})
	}
	res, err = m.run(ctx, cmds...)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		if serverGone(string(res.Stderr)) {
			return errServerGone
		}
		return fmt.Errorf("tmux could not build the monitor session %s: %s", name, strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// AttachArgv is the argv that attaches the terminal to session name.
func (m *Machine) AttachArgv(name string) []string {
	return append([]string{"env", "-u", "TMUX"}, m.tmux("attach-session", "-t", "="+name)...)
}
