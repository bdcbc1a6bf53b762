package main

import (
	"strings"

	"github.com/robotlauncher/launcher/engine/config"
)

// Commands that never read the config (no plugins are loaded for them).
var configless = map[string]bool{"completion": true, "lua-types": true}

// prescan reads the common flags and the command name from the raw
// arguments, the way normalizeArgs will see them.
func prescan(args []string) (flagValues, string) {
	var f flagValues
	cmd := ""
	helpSeen := false
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !isFlag(a) {
			if cmd == "" {
				cmd = a
			}
			continue
		}
		next := func() string {
			if hasVal {
				return val
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch name {
		case "c", "config":
			f.config = next()
		case "tmux-socket":
			f.socket = next()
		case "tmux-config":
			f.tmuxConfig = next()
		case "accept-new-host-keys":
			f.acceptNew = !hasVal || val == "true"
		case "no-plugins":
			f.noPlugins = !hasVal || val == "true"
		case "help", "h", "version", "generate-bash-completion":
			// Read on: a -c after --help still selects the config whose
			// plugin commands the help lists.
			if cmd == "" {
				helpSeen = true
			}
		}
	}
	if cmd == "" && helpSeen {
		cmd = "help"
	}
	return f, cmd
}

// preload wires everything, plugins included, before the command line is
// parsed, for commands that use the config. Without a config there is
// nothing to load: the command itself reports that when it needs one.
func (s *session) preload(args []string) error {
	f, cmd := prescan(args)
	if cmd == "" || configless[cmd] {
		return nil
	}
	if cmd == "help" || cmd == "h" {
		// Help lists plugin commands when the config loads; a broken
		// config must not hide the help.
		if err := s.preloadConfig(f); err != nil {
			s.cfg, s.engine, s.pool = nil, nil, nil
		}
		return nil
	}
	return s.preloadConfig(f)
}

func (s *session) preloadConfig(f flagValues) error {
	path, ok := s.findConfig(f.config)
	if !ok {
		return nil // the command reports it when it needs a config
	}
	cfg, err := config.Load(path)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.socket == "" {
		f.socket = s.getenv("LAUNCHER_TMUX_SOCKET")
	}
	if f.tmuxConfig == "" {
		f.tmuxConfig = s.getenv("LAUNCHER_TMUX_CONFIG")
	}
	_, err = s.wire(cfg, f)
	return err
}
