package main

import (
	"strings"

	"github.com/robotlauncher/launcher/engine/config"
)

// Commands that never read the config (no plugins are loaded for them).
var configless = map[string]bool{"completion": true, "lua-types": true, "version": true}

// parseCommon is the one parser of the common flags (-c/--config,
// --tmux-socket, --tmux-config, --accept-new-host-keys, --no-plugins):
// wherever they stand before "--", they are launcher's, read here and
// taken out of the arguments, so urfave/cli (which lists them in --help)
// never parses them again. It also finds the command name ("help" for a
// bare --help, so a -c after it still selects the config whose plugin
// commands the help lists).
func parseCommon(args []string) (f flagValues, cmd string, rest []string) {
	rest = []string{args[0]}
	helpSeen := false
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !isFlag(a) {
			if cmd == "" {
				cmd = a
			}
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		value := func(dst *string) {
			switch {
			case hasVal:
				*dst = val
			case i+1 < len(args):
				i++
				*dst = args[i]
			default:
				rest = append(rest, a) // urfave/cli reports the missing value
			}
		}
		switch name {
		case "c", "config":
			value(&f.config)
		case "tmux-socket":
			value(&f.socket)
		case "tmux-config":
			value(&f.tmuxConfig)
		case "accept-new-host-keys":
			f.acceptNew = !hasVal || val == "true"
		case "no-plugins":
			f.noPlugins = !hasVal || val == "true"
		case "v", "variant", "variants", "p", "param", "params":
			// concert_launcher's -v CHOICE and -p k:=v before the command:
			// their value is no command name (normalizeArgs moves them
			// after it).
			rest = append(rest, a)
			if !hasVal && cmd == "" && i+1 < len(args) {
				i++
				rest = append(rest, args[i])
			}
		default:
			if (name == "help" || name == "h" || name == "version" || name == "generate-bash-completion") && cmd == "" {
				helpSeen = true
			}
			rest = append(rest, a)
		}
	}
	if cmd == "" && helpSeen {
		cmd = "help"
	}
	return f, cmd, rest
}

// preload wires everything, plugins included, before the command line is
// parsed, for commands that use the config. Without a config there is
// nothing to load: the command itself reports that when it needs one.
func (s *session) preload(f flagValues, cmd string) error {
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
	_, err = s.wire(cfg, f) // wire applies $LAUNCHER_TMUX_SOCKET/_CONFIG
	return err
}
