package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor/pool"
	"github.com/robotlauncher/launcher/executor/tmux"
	"github.com/robotlauncher/launcher/lua/binding"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const pluginCategory = "plugin commands"

// drainTimeout bounds the wait for event handlers at exit.
const drainTimeout = 5 * time.Second

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// session is one invocation of the CLI: its streams, environment and the
// pieces it wired together.
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// scriptOut is stdout for a script's print and the progress lines
	// printed beside it: one Write at a time, so lines never mix.
	scriptOut io.Writer
	// traceOut is stderr for LAUNCHER_TRACE's lines, which the machine
	// pool and the SSH transport write from many goroutines: one Write at
	// a time.
	traceOut io.Writer
	getenv   func(string) string
	tty      bool
	color    bool

	ctx       context.Context
	cfg       *config.Config
	pool      *pool.Pool
	engine    *engine.Engine
	journal   *journal
	lua       *binding.Host
	acceptNew bool
	// flags are the common flags, read once by parseCommon.
	flags flagValues
}

// syncWriter serialises Writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// exitError carries an exit code through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// Main runs the CLI and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	s := &session{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, scriptOut: &syncWriter{w: stdout}, traceOut: &syncWriter{w: stderr}}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		s.tty = true
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	s.color = s.tty && !noColor && getenv("TERM") != "dumb"
	defer func() {
		if s.pool != nil {
			_ = s.pool.Close()
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s.ctx = ctx
	defer func() {
		if s.lua != nil {
			s.lua.Close()
		}
	}()
	// Plugins add commands, so they load before the command line is
	// parsed: every command that uses the config loads them.
	f, cmd, rest := parseCommon(args)
	s.flags = f
	if err := s.preload(f, cmd); err != nil {
		return s.report(ctx, err)
	}
	app := s.newApp()
	err := app.RunContext(ctx, normalizeArgs(app, rest))
	if s.lua != nil {
		// Events of the last operation reach their handlers whatever the
		// outcome (a failure's alerts above all), within a bound: a handler
		// that never yields is stopped when the Lua host closes.
		rep := s.lua.Drain(drainTimeout)
		switch {
		case rep.Idle:
		case ctx.Err() != nil:
			fmt.Fprintf(s.stderr, "launcher: interrupted: Lua event handlers were stopped (%s)\n", rep)
		default:
			fmt.Fprintf(s.stderr, "launcher: Lua event handlers still busy after %s were stopped (%s); a plugin waits longer with launcher.set_drain_timeout(seconds)\n", rep.Waited, rep)
		}
	}
	if s.journal != nil {
		s.journal.close()
	}
	// Ctrl-C (or SIGTERM) is 130 whenever it came: during the command, at
	// its end or while handlers drained; watch and status -w included, whose
	// normal end it is (the shell and scripts read 130 as "interrupted").
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return s.report(ctx, err)
}

// report prints err and maps it to an exit code.
func (s *session) report(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil {
		// After Ctrl-C every failure is its consequence (a script cut off
		// while its modules load ends in a Lua error, not context.Canceled):
		// the operator gets 130 and the one message that matters.
		fmt.Fprintln(s.stderr, "launcher: interrupted; processes that started keep running")
		return exitInterrupted
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(s.stderr, "launcher: "+ee.err.Error())
		}
		return ee.code
	}
	code := exitCode(ctx, err)
	if code == exitInterrupted {
		fmt.Fprintln(s.stderr, "launcher: interrupted; processes that started keep running")
		return code
	}
	fmt.Fprintln(s.stderr, "launcher: "+err.Error())
	return code
}

func exitCode(ctx context.Context, err error) int {
	var cerr *config.Error
	var cerrs config.Errors
	var unknown *config.UnknownProcessError
	var unsafe *tmux.UnsafePathError
	var refused *engine.PlanError
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return exitInterrupted
	case errors.As(err, &refused):
		// Nothing changed either way: 2 when every problem is the input's
		// (an unsafe path, an unknown check kind), 1 when a machine or a
		// file system is at fault.
		for _, p := range refused.Problems {
			var perr *config.Error
			if !errors.As(p, &unsafe) && !errors.As(p, &perr) {
				return exitFailed
			}
		}
		return exitUsage
	case errors.As(err, &cerr), errors.As(err, &cerrs), errors.As(err, &unknown), errors.As(err, &unsafe):
		return exitUsage
	}
	return exitFailed
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config `FILE` (default: $LAUNCHER_CONFIG, $CONCERT_LAUNCHER_DEFAULT_CONFIG, ./launcher.yaml)"}
}

func commonFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "tmux-socket", Usage: "use the local tmux server at `PATH` (default: $LAUNCHER_TMUX_SOCKET, else tmux's own)"},
		&cli.StringFlag{Name: "tmux-config", Usage: "tmux config `FILE` used when launcher starts the local server ($LAUNCHER_TMUX_CONFIG)", Hidden: true},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "record the host keys of SSH machines not yet in known_hosts (changed keys are still refused)"},
		&cli.BoolFlag{Name: "no-plugins", Usage: "load no Lua plugins (e.g. to stop a robot whose plugin is broken) ($LAUNCHER_NO_PLUGINS)"},
	}
}

func withCommon(flags ...cli.Flag) []cli.Flag { return append(commonFlags(), flags...) }

func (s *session) newApp() *cli.App {
	app := &cli.App{
		Name:                      "launcher",
		Usage:                     "bring up and keep an eye on the processes of a robot, in tmux, locally, over SSH and in Docker",
		Version:                   version,
		Writer:                    s.stdout,
		ErrWriter:                 s.stderr,
		Reader:                    s.stdin,
		EnableBashCompletion:      true,
		DisableSliceFlagSeparator: true,
		HideHelpCommand:           true,
		// The common flags are also accepted before the command name (plugin
		// commands, help).
		// urfave/cli adds --help only when it adds its own help command,
		// which ours replaces.
		Flags:          append(commonFlags(), cli.HelpFlag),
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return &exitError{code: exitUsage, err: fmt.Errorf("%w (see launcher %s --help)", err, c.Command.Name)}
		},
		Commands: append([]*cli.Command{
			s.runCommand(), s.killCommand(), s.restartCommand(), s.statusCommand(), s.watchCommand(), s.logsCommand(), s.analyzeCommand(),
			s.monCommand(), s.planCommand(), s.validateCommand(), s.scriptCommand(), s.luaTypesCommand(),
			s.attachCommand(), s.adoptCommand(), s.bundleCommand(), s.serveCommand(), s.serviceCommand(), s.completionCommand(), helpCommand(), s.versionCommand(), s.persistCommand(),
		}, s.pluginCommands()...),
		// A word that is no command is a usage error (exit 2), not "no help
		// topic" with exit 1.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("unknown command %q (see launcher --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = app.OnUsageError
		}
	}
	return app
}

func init() {
	// -v is concert_launcher's variant flag, before the command too: the
	// version is --version (or `launcher version`), without a short form.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
}

// versionCommand is `launcher version`.
func (s *session) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(s.stdout, "launcher "+version)
			return nil
		},
	}
}

// helpCommand is `launcher help [COMMAND]` (urfave/cli's own is hidden and
// answers "No help topic" with exit 1).
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Aliases:   []string{"h"},
		Usage:     "show the commands, or one command's help",
		ArgsUsage: "[COMMAND]",
		Flags:     withCommon(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowAppHelp(c)
			}
			name := c.Args().First()
			cmd := c.App.Command(name)
			if cmd == nil {
				return usageErr("unknown command %q (see launcher --help)", name)
			}
			showCommandHelp(c, cmd)
			return nil
		},
	}
}

// showCommandHelp prints cmd's help (cli.ShowCommandHelp looks only among
// the subcommands of the context it is given).
func showCommandHelp(c *cli.Context, cmd *cli.Command) {
	cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, cmd)
}

// configPath finds the config: --config, $LAUNCHER_CONFIG,
// $CONCERT_LAUNCHER_DEFAULT_CONFIG, ./launcher.yaml.
func (s *session) configPath(c *cli.Context) (string, error) {
	if p, ok := s.findConfig(s.flags.config); ok {
		return p, nil
	}
	return "", usageErr("no configuration found; use --config FILE or set LAUNCHER_CONFIG")
}

// findConfig is the one config lookup order (the command line's, and the
// plugin preload's before the command line is parsed): flag, the two
// environment variables (made absolute), then ./launcher.yaml if it exists.
func (s *session) findConfig(flag string) (string, bool) {
	if flag != "" {
		return flag, true
	}
	for _, env := range []string{"LAUNCHER_CONFIG", "CONCERT_LAUNCHER_DEFAULT_CONFIG"} {
		if p := s.getenv(env); p != "" {
			if abs, err := filepath.Abs(p); err == nil {
				return abs, true
			}
			return p, true
		}
	}
	if _, err := os.Stat("launcher.yaml"); err == nil {
		return "launcher.yaml", true
	}
	return "", false
}

// load reads the config.
func (s *session) load(c *cli.Context) (*config.Config, error) {
	if s.cfg != nil {
		return s.cfg, nil
	}
	path, err := s.configPath(c)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	s.cfg = cfg
	return cfg, nil
}

// setup loads the config and wires the executors and the engine.
func (s *session) setup(c *cli.Context) (*engine.Engine, error) {
	if s.engine != nil {
		return s.engine, nil
	}
	cfg, err := s.load(c)
	if err != nil {
		return nil, err
	}
	f := s.flags
	f.config = cfg.File
	return s.wire(cfg, f)
}

// flagValues are the common flags, read before the command line is parsed
// (plugins load first) or from it.
type flagValues struct {
	config, socket, tmuxConfig string
	acceptNew, noPlugins       bool
}

// wire creates the executors, the engine and the Lua host for cfg, and
// loads the plugins.
func (s *session) wire(cfg *config.Config, f flagValues) (*engine.Engine, error) {
	s.cfg = cfg
	s.acceptNew = f.acceptNew
	o, err := s.poolOptionsFrom(cfg, f)
	if err != nil {
		return nil, err
	}
	s.pool = pool.New(o)
	s.engine = engine.New(engine.Options{Config: cfg, Connector: s.pool})
	s.startJournal(s.engine, cfg.Session)
	// Lua starts only when the config uses it (plugins, check kinds) or a
	// script runs: plain commands stay fast.
	files := binding.PluginFiles(cfg, s.getenv)
	if f.noPlugins || truthy(s.getenv("LAUNCHER_NO_PLUGINS")) {
		files = nil
	}
	for _, file := range files {
		// A plugin runs as the caller: one that another user could have
		// written is refused (--no-plugins keeps status and kill usable).
		if err := pool.SafeFile(file); err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("plugin %w (fix it, or run with --no-plugins)", err)}
		}
	}
	if len(files) == 0 && !usesCheckKinds(cfg) {
		return s.engine, nil
	}
	return s.engine, s.startLua(files)
}

func usesCheckKinds(cfg *config.Config) bool {
	for _, p := range cfg.Processes {
		if p.ReadyCheck != nil && p.ReadyCheck.Kind != "" {
			return true
		}
	}
	return false
}

// startLua creates the Lua host and loads the plugins.
func (s *session) startLua(files []string) error {
	if s.lua != nil {
		return nil
	}
	var builtins []string
	for _, c := range s.newApp().Commands {
		builtins = append(builtins, c.Name)
		builtins = append(builtins, c.Aliases...)
	}
	builtins = append(builtins, "help", "h")
	noPlugins := s.flags.noPlugins || truthy(s.getenv("LAUNCHER_NO_PLUGINS"))
	lh, err := binding.New(s.ctx, s.engine, binding.Options{Log: s.stderr, Stdout: s.scriptOut, Builtins: builtins, NoPlugins: noPlugins})
	if err != nil {
		return err
	}
	s.lua = lh
	if err := lh.LoadPlugins(files); err != nil {
		var le *binding.LoadError
		var ce config.Errors
		if errors.As(err, &le) || errors.As(err, &ce) {
			return &exitError{code: exitUsage, err: err}
		}
		return err
	}
	return nil
}

func (s *session) poolOptions(c *cli.Context, cfg *config.Config) (pool.Options, error) {
	return s.poolOptionsFrom(cfg, flagValues{socket: s.flags.socket, tmuxConfig: s.flags.tmuxConfig})
}

// poolOptionsFrom builds the executor options, refusing local paths that
// would lose logs or hand control to another user (exit 2, nothing done).
func (s *session) poolOptionsFrom(cfg *config.Config, f flagValues) (pool.Options, error) {
	o := pool.Options{TmuxSocket: f.socket, TmuxConfig: f.tmuxConfig, LogDir: cfg.LogDir}
	if o.TmuxSocket == "" {
		o.TmuxSocket = s.getenv("LAUNCHER_TMUX_SOCKET")
	}
	if err := pool.CheckStateDir(); err != nil {
		return o, &exitError{code: exitUsage, err: err}
	}
	if o.TmuxSocket != "" {
		sock, err := pool.PrepareSocket(o.TmuxSocket)
		if err != nil {
			return o, &exitError{code: exitUsage, err: err}
		}
		o.TmuxSocket = sock
	}
	if o.TmuxConfig == "" {
		o.TmuxConfig = s.getenv("LAUNCHER_TMUX_CONFIG")
	}
	// Settings of the SSH transport are checked before anything runs,
	// not when the first remote machine is dialled.
	if _, err := s.persistDuration(); err != nil {
		return o, err
	}
	o.Remote = s.remoteDialer()
	if s.getenv("LAUNCHER_TRACE") != "" {
		o.Trace = s.traceOut
	}
	return o, nil
}

// checkNames validates process arguments before anything runs, so a typo
// is exit 2 and changes nothing.
func (s *session) checkNames(names []string) error {
	for _, n := range names {
		if _, err := s.cfg.Lookup(n); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	return nil
}

// parseParams parses -p key:=value items (split at the first ":=").
func parseParams(items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, ":=")
		if !ok {
			return nil, usageErr("-p expects key:=value, got %q", it)
		}
		if k == "" {
			return nil, usageErr("-p expects a non-empty key, got %q", it)
		}
		out[k] = v
	}
	return out, nil
}
