package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/lua/binding"
	"github.com/robotlauncher/launcher/lua/host"
	"github.com/robotlauncher/launcher/stdlib"
)

func (s *session) scriptCommand() *cli.Command {
	return &cli.Command{
		Name:      "script",
		Usage:     "run a Lua script against the config (require(\"launcher\") gives the API)",
		ArgsUsage: "FILE.lua [ARGS...]",
		Flags:     withCommon(),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usageErr("script needs a Lua file")
			}
			if _, err := s.setup(c); err != nil {
				return err
			}
			if err := s.startLua(binding.PluginFiles(s.cfg, s.getenv)); err != nil {
				return err
			}
			file := c.Args().First()
			if _, err := os.Stat(file); err != nil {
				return usageErr("cannot read script %s: %v", file, errors.Unwrap(err))
			}
			return s.runLua(c, "", func() error { return s.lua.RunScript(file, c.Args().Tail()) })
		},
	}
}

// runLua runs a script or a plugin command (command: its name) with
// progress lines for the operations it starts, and maps its end to an exit
// status.
func (s *session) runLua(c *cli.Context, command string, run func() error) error {
	p := newProgress(s.scriptOut, newStyle(s.color), false)
	unsub := s.engine.Bus().Subscribe(nil, p.event)
	err := run()
	unsub()
	if err == nil {
		return nil
	}
	var le *binding.LoadError
	var status binding.ExitStatus
	switch {
	case errors.As(err, &status):
		// The plugin command's own exit code: it said what it had to.
		return &exitError{code: int(status)}
	case errors.As(err, &le):
		return &exitError{code: exitUsage, err: errors.New(le.Msg)}
	case c.Context.Err() != nil || host.Cancelled(err):
		return &exitError{code: exitInterrupted, err: errors.New("interrupted; processes that started keep running")}
	}
	if command != "" {
		// A plugin command is a command like any other: its error is one
		// line at the plugin's file:line (the traceback with LAUNCHER_TRACE=1).
		msg := err.Error()
		if i := strings.Index(msg, "\nstack traceback:"); i >= 0 && s.getenv("LAUNCHER_TRACE") == "" {
			msg = msg[:i]
		}
		return &exitError{code: exitFailed, err: fmt.Errorf("%s: %s", command, msg)}
	}
	return &exitError{code: exitFailed, err: fmt.Errorf("script failed: %w", err)}
}

// pluginCommands turns the commands plugins registered into subcommands.
func (s *session) pluginCommands() []*cli.Command {
	if s.lua == nil {
		return nil
	}
	var out []*cli.Command
	for _, pc := range s.lua.Commands() {
		out = append(out, &cli.Command{
			Name:            pc.Name,
			Usage:           pc.Help,
			UsageText:       "launcher " + pc.Name + " " + pc.Usage,
			Category:        pluginCategory,
			SkipFlagParsing: true,
			Action: func(c *cli.Context) error {
				// Its arguments go to Lua unparsed, except a request for
				// help: that never runs the command.
				if wantsHelp(c.Args().Slice()) {
					showCommandHelp(c, c.App.Command(pc.Name))
					return nil
				}
				return s.runLua(c, pc.Name, func() error { return s.lua.RunCommand(pc, c.Args().Slice()) })
			},
		})
	}
	return out
}

// wantsHelp reports whether a plugin command's arguments ask for help:
// --help or -h anywhere before "--" (`launcher homing z --help` ran the
// command), or a lone "help".
func wantsHelp(args []string) bool {
	if len(args) == 1 && args[0] == "help" {
		return true
	}
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--help" || a == "-h" {
			return true
		}
	}
	return false
}

func (s *session) luaTypesCommand() *cli.Command {
	return &cli.Command{
		Name:      "lua-types",
		Usage:     "write LuaLS type stubs of the Lua API to DIR/.launcher/types (and DIR/.luarc.json) for your editor",
		ArgsUsage: "[DIR]",
		Action: func(c *cli.Context) error {
			// DIR is the project (the scripts' folder): the stubs go in a
			// folder of their own inside it, so no file of the user's is
			// ever overwritten and the scripts are not taken as a library.
			project := c.Args().First()
			if project == "" {
				project = "."
			}
			rel := filepath.Join(".launcher", "types")
			dir := filepath.Join(project, rel)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			entries, err := fs.ReadDir(stdlib.Lua, "types")
			if err != nil {
				return err
			}
			for _, e := range entries {
				data, _ := fs.ReadFile(stdlib.Lua, "types/"+e.Name())
				path := filepath.Join(dir, e.Name())
				if old, err := os.ReadFile(path); err == nil && !bytes.HasPrefix(old, []byte("---@meta")) {
					return &exitError{code: exitUsage, err: fmt.Errorf("%s exists and is not a launcher stub: move it away (nothing was written over it)", path)}
				}
				if err := os.WriteFile(path, data, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(s.stdout, "wrote %d stubs to %s\n", len(entries), dir)
			rc := fmt.Sprintf("{\n  \"runtime.version\": \"Lua 5.1\",\n  \"workspace.library\": [%q],\n  \"diagnostics.globals\": []\n}\n", rel)
			rcPath := filepath.Join(project, ".luarc.json")
			if _, err := os.Stat(rcPath); err == nil {
				fmt.Fprintf(s.stdout, "%s exists; add %q to its workspace.library\n", rcPath, rel)
				return nil
			}
			if err := os.WriteFile(rcPath, []byte(rc), 0o644); err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, "wrote "+rcPath)
			return nil
		},
	}
}
