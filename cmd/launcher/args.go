package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// normalizeArgs moves every flag of a subcommand in front of its positional
// arguments, so `launcher run cartesio -v ec_idle -c robot.yaml` means what
// users of concert_launcher expect. urfave/cli (like Go's flag package) stops
// parsing flags at the first positional argument and would otherwise treat
// the rest as arguments silently (urfave/cli#976, #1177).
//
// The multi-value flags of concert_launcher (`-v a b`, `-p k:=v k2:=v2`) are
// expanded to repeated flags: values after -p are taken while they contain
// ":="; values after -v are taken while the command's process argument has
// already been given. Arguments after "--" are left alone. A flag that is
// not defined stays in place, so urfave/cli reports it as an error.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		// urfave/cli looks for the completion flag in the last position.
		return args
	}
	out := []string{args[0]}
	i := 1
	// Flags before the command name: the command's own flags (-c, --tmux-socket)
	// move after it, the app's (--help, --version) stay.
	var early []string
	for i < len(args) && isFlag(args[i]) {
		early = append(early, args[i])
		if !strings.Contains(args[i], "=") && i+1 < len(args) && (takesValue(app.Flags, args[i]) || takesValue(commonFlags(), args[i]) || takesValue(requestFlags(), args[i])) {
			early = append(early, args[i+1])
			i++
		}
		i++
	}
	if i >= len(args) {
		return append(out, early...)
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return append(append(out, early...), args[i:]...)
	}
	if cmd.SkipFlagParsing {
		// Plugin commands get their arguments untouched, except launcher's
		// own common flags, which go before the command name.
		var rest []string
		for j := i + 1; j < len(args); j++ {
			if args[j] == "--" {
				rest = append(rest, args[j:]...)
				break
			}
			if f := lookupFlag(commonFlags(), args[j]); f != nil {
				early = append(early, args[j])
				if flagTakesValue(f) && !strings.Contains(args[j], "=") && j+1 < len(args) {
					early = append(early, args[j+1])
					j++
				}
				continue
			}
			rest = append(rest, args[j])
		}
		return append(append(append(out, early...), args[i]), rest...)
	}
	out = append(out, args[i])
	i++
	// `launcher service install --user`: the flags belong to the innermost
	// subcommand named, so descend to it first.
	for i < len(args) && len(cmd.Subcommands) > 0 {
		sub := cmd.Command(args[i])
		if sub == nil {
			break
		}
		cmd = sub
		out = append(out, args[i])
		i++
	}
	args = append(append(append([]string{}, args[:i]...), early...), args[i:]...)
	var flags, pos []string
	passthrough := cmd.Name == "script" || isPluginCommand(cmd)
	for i < len(args) {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !isFlag(a) {
			pos = append(pos, a)
			i++
			continue
		}
		f := lookupFlag(cmd.Flags, a)
		if f == nil && passthrough && len(pos) > 0 {
			// Script arguments: everything after the script's name that is
			// not one of ours belongs to the script.
			pos = append(pos, a)
			i++
			continue
		}
		flags = append(flags, a)
		i++
		if f == nil || !flagTakesValue(f) || strings.Contains(a, "=") {
			continue
		}
		if i < len(args) {
			flags = append(flags, args[i])
			i++
		}
		// concert_launcher's nargs+ forms.
		name := flagName(a)
		for i < len(args) && !isFlag(args[i]) && args[i] != "--" {
			v := args[i]
			switch {
			case (name == "p" || name == "param" || name == "params") && strings.Contains(v, ":="):
			case (name == "v" || name == "variant" || name == "variants") && len(pos) > 0:
			default:
				goto done
			}
			flags = append(flags, a, v)
			i++
		}
	done:
	}
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' && a != "--" }

func flagName(a string) string {
	a = strings.TrimLeft(a, "-")
	if i := strings.IndexByte(a, '='); i >= 0 {
		a = a[:i]
	}
	return a
}

func lookupFlag(flags []cli.Flag, a string) cli.Flag {
	name := flagName(a)
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	// urfave/cli's hidden completion flag.
	if name == "generate-bash-completion" {
		return &cli.BoolFlag{Name: name}
	}
	return nil
}

func takesValue(flags []cli.Flag, a string) bool {
	f := lookupFlag(flags, a)
	return f != nil && flagTakesValue(f)
}

func flagTakesValue(f cli.Flag) bool {
	if dg, ok := f.(cli.DocGenerationFlag); ok {
		return dg.TakesValue()
	}
	return false
}

func isPluginCommand(cmd *cli.Command) bool { return cmd.Category == pluginCategory }
