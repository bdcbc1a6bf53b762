package main

import (
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/engine"
)

// TestFlagsAfterArguments checks, for every command, that flags placed
// after the positional arguments are moved in front of them (urfave/cli
// would otherwise take them for arguments, silently).
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	s := &session{getenv: func(string) string { return "" }}
	app := s.newApp()
	cases := []struct{ in, want string }{
		{"run cartesio -v ec_idle -c robot.yaml", "run -v ec_idle -c robot.yaml -- cartesio"},
		{"run cartesio -v ec_idle debug -c r.yaml", "run -v ec_idle -v debug -c r.yaml -- cartesio"},
		{"run cartesio -p a:=1 b:=x:=y -w", "run -p a:=1 -p b:=x:=y -w -- cartesio"},
		{"run -v debug cartesio", "run -v debug -- cartesio"},
		{"-c r.yaml run cartesio --timeout 5s", "run -c r.yaml --timeout 5s -- cartesio"},
		{"kill a b --force -c r.yaml", "kill --force -c r.yaml -- a b"},
		{"kill --all -c r.yaml", "kill --all -c r.yaml"},
		{"restart a --force -p k:=v", "restart --force -p k:=v -- a"},
		{"status a --json -c r.yaml", "status --json -c r.yaml -- a"},
		{"status -w a", "status -w -- a"},
		{"watch a b -n 5", "watch -n 5 -- a b"},
		{"analyze a --json", "analyze --json -- a"},
		{"logs a --run 1f0c --since 10m -n 5", "logs --run 1f0c --since 10m -n 5 -- a"},
		{"mon --attach -c r.yaml", "mon --attach -c r.yaml"},
		{"plan a --json -v x", "plan --json -v x -- a"},
		{"validate -c r.yaml", "validate -c r.yaml"},
		{"script b.lua --robot kyon -c r.yaml", "script -c r.yaml -- b.lua --robot kyon"},
		{"attach a --wait", "attach --wait -- a"},
		{"adopt core ctrl --json -c r.yaml", "adopt --json -c r.yaml -- core ctrl"},
		{"bundle -o x.tar.gz --since 2h", "bundle -o x.tar.gz --since 2h"},
		{"lua-types dir", "lua-types -- dir"},
		{"run a -- -weird", "run -- a -weird"},
		{"status --bogus a", "status --bogus -- a"},
		{"help run -c r.yaml", "help -c r.yaml -- run"},
		{"serve -c r.yaml --listen 127.0.0.1:9000", "serve -c r.yaml --listen 127.0.0.1:9000"},
		// Issue 16: concert_launcher's -v CHOICE (and -p) before the command
		// select a variant; they printed the version.
		{"-c r.yaml -v sim plan x", "plan -c r.yaml -v sim -- x"},
		{"-v sim -p a:=b run x", "run -v sim -p a:=b -- x"},
		{"version", "version"},
		// Flags belong to the innermost subcommand named.
		{"service install --user --up a --up b -c r.yaml", "service install --user --up a --up b -c r.yaml"},
		{"-c r.yaml service status --user", "service status -c r.yaml --user"},
		{"service uninstall --name x", "service uninstall --name x"},
	}
	for _, c := range cases {
		got := strings.Join(normalizeArgs(app, append([]string{"launcher"}, strings.Fields(c.in)...))[1:], " ")
		if got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	// Every command of the app has a case above.
	covered := map[string]bool{}
	for _, c := range cases {
		for _, w := range strings.Fields(c.in) {
			covered[w] = true
		}
	}
	for _, cmd := range app.Commands {
		if !cmd.Hidden && cmd.Name != "completion" && !covered[cmd.Name] {
			t.Errorf("command %s has no flag-order case", cmd.Name)
		}
	}
}

func TestParseParams(t *testing.T) {
	t.Parallel()
	p, err := parseParams([]string{"a:=1", "url:=http://x:=y", "empty:="})
	if err != nil || p["a"] != "1" || p["url"] != "http://x:=y" || p["empty"] != "" {
		t.Errorf("%v %v", p, err)
	}
	for _, bad := range []string{"novalue", ":=x"} {
		if _, err := parseParams([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestParseCommon: the common flags are read once, wherever they stand
// before "--", and taken out of what urfave/cli parses.
func TestParseCommon(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, rest, cmd string
		want          flagValues
	}{
		{"run cartesio -v x -c r.yaml --tmux-socket s --no-plugins", "run cartesio -v x", "run", flagValues{config: "r.yaml", socket: "s", noPlugins: true}},
		{"--config=r.yaml --accept-new-host-keys status --json", "status --json", "status", flagValues{config: "r.yaml", acceptNew: true}},
		{"--help -c r.yaml", "--help", "help", flagValues{config: "r.yaml"}},
		{"script b.lua -- -c kept", "script b.lua -- -c kept", "script", flagValues{}},
		{"run x -c", "run x -c", "run", flagValues{}},
		{"--tmux-config /dev/null homing --help", "homing --help", "homing", flagValues{tmuxConfig: "/dev/null"}},
		{"-c r.yaml -v sim plan x", "-v sim plan x", "plan", flagValues{config: "r.yaml"}},
		{"--variant=sim -p a:=b run x", "--variant=sim -p a:=b run x", "run", flagValues{}},
	}
	for _, c := range cases {
		f, cmd, rest := parseCommon(append([]string{"launcher"}, strings.Fields(c.in)...))
		if f != c.want || cmd != c.cmd || strings.Join(rest[1:], " ") != c.rest {
			t.Errorf("%q: got %+v %q %q, want %+v %q %q", c.in, f, cmd, rest[1:], c.want, c.cmd, c.rest)
		}
	}
}

// Issue 13, item 7: a request for help anywhere in a plugin command's
// arguments shows its help instead of running it.
func TestPluginCommandHelp(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"--help": true, "z --help": true, "-h": true, "z -h x": true, "help": true,
		"z": false, "help z": false, "z -- --help": false, "": false,
	} {
		if got := wantsHelp(strings.Fields(in)); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

// Issue 13, item 8: state events print nothing in line output (they were
// empty "• [proc] " lines); the others still print.
func TestProgressSkipsStateEvents(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	p := newProgress(&b, newStyle(false), false)
	p.event(engine.Event{Kind: engine.StateChanged, Process: "a"})
	p.event(engine.Event{Kind: engine.Ready, Process: "a", Message: "ready"})
	if out := b.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "[a] ready") {
		t.Errorf("line output: %q", out)
	}
}
