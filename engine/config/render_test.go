package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRender(t *testing.T) {
	params := map[string]string{"robot": "kyon", "hz": "100", "x_1": "v"}
	cases := []struct{ in, want, missing string }{
		{"run {robot} --hz {hz}", "run kyon --hz 100", ""},
		{"awk '{print $1}'", "awk '{print $1}'", ""},
		{"echo ${HOME} $HOME", "echo ${HOME} $HOME", ""},
		{"echo {{robot}}", "echo {robot}", ""},
		{"json '{{\"a\": 1}}'", "json '{\"a\": 1}'", ""},
		{"echo {a,b} { robot } {}", "echo {a,b} { robot } {}", ""},
		{"{x_1}{robot}", "vkyon", ""},
		{"f() { echo hi; }; f", "f() { echo hi; }; f", ""},
		{"echo {missing}", "", "missing"},
		{"trailing {", "trailing {", ""},
		{"}} and }", "} and }", ""},
		{"{1abc}", "{1abc}", ""},
	}
	for _, c := range cases {
		got, missing := Render(c.in, params)
		if missing != c.missing || (c.missing == "" && got != c.want) {
			t.Errorf("Render(%q) = %q, missing %q; want %q, missing %q", c.in, got, missing, c.want, c.missing)
		}
	}
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{"a {b} c", "{{}}", "${X}", "{", "}", "{a}{b}", "awk '{print}'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		params := map[string]string{"a": "A", "b": "{b}"}
		out, missing := Render(s, params)
		if missing != "" {
			if out != "" {
				t.Fatalf("output %q with missing param %q", out, missing)
			}
			if !strings.Contains(s, "{"+missing+"}") {
				t.Fatalf("missing %q not in template %q", missing, s)
			}
			return
		}
		// Without braces, rendering is the identity.
		if !strings.ContainsAny(s, "{}") && out != s {
			t.Fatalf("Render(%q) = %q", s, out)
		}
		// Substituted values are not rendered again.
		if strings.Count(out, "{b}") < strings.Count(s, "{b}")-strings.Count(s, "{{b}") {
			t.Fatalf("value re-rendered: %q -> %q", s, out)
		}
	})
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, fn := range files {
		if data, err := os.ReadFile(fn); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			if cfg.Session == "" {
				t.Fatal("loaded without a session")
			}
			for _, p := range cfg.Processes {
				if !ValidProcessName(p.Name) {
					t.Fatalf("invalid name %q accepted", p.Name)
				}
				if _, err := cfg.Resolve([]string{p.Name}, Request{}); err != nil {
					var e *Error
					var es Errors
					if !asConfigError(err, &e, &es) {
						t.Fatalf("resolve %s: unexpected error type %T: %v", p.Name, err, err)
					}
				}
			}
			return
		}
		if err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

func asConfigError(err error, e **Error, es *Errors) bool {
	return errors.As(err, e) || errors.As(err, es)
}

func mustLoad(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

const variantsYAML = `
context:
  session: s
  params: {level: 1, who: base}
srv:
  cmd: server --level {level}
a:
  cmd: app {who}
  depends: [srv]
  variants:
    debug:
      cmd: "{cmd} --verbose"
    torque:
      cmd: "{cmd} --torque"
    quiet: ~
    mode:
      - fast:
          params: {who: fast}
      - slow:
          cmd: "slowapp {who}"
          params: {who: slow}
`

func TestVariants(t *testing.T) {
	cfg := mustLoad(t, variantsYAML)
	cases := []struct {
		variants []string
		params   map[string]string
		want     string
	}{
		{nil, nil, "app base"},
		{[]string{"debug"}, nil, "app base --verbose"},
		{[]string{"torque", "debug"}, nil, "app base --verbose --torque"}, // YAML order, not CLI order
		{[]string{"fast"}, map[string]string{"who": "cli"}, "app fast"},   // variant params beat -p
		{[]string{"slow", "debug"}, nil, "slowapp slow"},                  // a cmd without {cmd} replaces
		{[]string{"quiet"}, map[string]string{"who": "cli"}, "app cli"},
	}
	for _, c := range cases {
		plan, err := cfg.Resolve([]string{"a"}, Request{Variants: c.variants, Params: c.params})
		if err != nil {
			t.Fatalf("%v: %v", c.variants, err)
		}
		if got := plan.Get("a").Cmd; got != c.want {
			t.Errorf("variants %v params %v: cmd %q, want %q", c.variants, c.params, got, c.want)
		}
	}
	if _, err := cfg.Resolve([]string{"a"}, Request{Variants: []string{"fast", "slow"}}); err == nil ||
		!strings.Contains(err.Error(), `variant group "mode" selected more than once: fast, slow`) {
		t.Errorf("two choices of a group: %v", err)
	}
	_, err := cfg.Resolve([]string{"a"}, Request{Variants: []string{"debgu"}})
	if err == nil || !strings.Contains(err.Error(), `did you mean "debug"`) || !strings.Contains(err.Error(), "debug, fast, quiet, slow, torque") {
		t.Errorf("unknown variant: %v", err)
	}
	if _, err := cfg.Resolve([]string{"srv"}, Request{Variants: []string{"debug"}}); err == nil {
		t.Error("a variant no process of the graph declares must be an error")
	}
}

func TestMissingParam(t *testing.T) {
	cfg := mustLoad(t, "context: {session: s}\na:\n  cmd: run {robot}\n")
	_, err := cfg.Resolve([]string{"a"}, Request{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"test.yaml:3:8", `missing parameter "robot" for process "a"`, "-p robot:=VALUE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	plan, err := cfg.Resolve([]string{"a"}, Request{Params: map[string]string{"robot": "kyon"}})
	if err != nil || plan.Get("a").Cmd != "run kyon" {
		t.Fatalf("with -p: %v", err)
	}
}

func TestReadyCheckRenderedWithCmdParams(t *testing.T) {
	cfg := mustLoad(t, `
context: {session: s, params: {port: 1}}
a:
  cmd: serve {port}
  ready_check: nc -z localhost {port}
  variants:
    alt: {params: {port: 2}}
`)
	plan, err := cfg.Resolve([]string{"a"}, Request{Variants: []string{"alt"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := plan.Get("a"); r.Cmd != "serve 2" || r.ReadyCheck != "nc -z localhost 2" {
		t.Errorf("cmd %q check %q", r.Cmd, r.ReadyCheck)
	}
}

// TestPlanGolden compares the JSON plan (what `launcher plan --json` prints)
// of each config under testdata/plans with its .golden file.
func TestPlanGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/plans/*.yaml")
	if len(files) == 0 {
		t.Fatal("no plan configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			var root string
			var req Request
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "# root: "); ok {
					root = v
				}
				if v, ok := strings.CutPrefix(line, "# variants: "); ok {
					req.Variants = strings.Fields(v)
				}
				if v, ok := strings.CutPrefix(line, "# params: "); ok {
					req.Params = map[string]string{}
					for _, kv := range strings.Fields(v) {
						k, val, _ := strings.Cut(kv, ":=")
						req.Params[k] = val
					}
				}
			}
			cfg, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := cfg.Resolve([]string{root}, req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(plan, "", "  ")
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("plan differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestClosureAndOrder(t *testing.T) {
	cfg := mustLoad(t, `
context: {session: s}
top: {cmd: t, depends: [left, right]}
left: {cmd: l, depends: [base]}
right: {cmd: r, depends: [base]}
base: {cmd: b}
other: {cmd: o}
`)
	plan, err := cfg.Resolve([]string{"top"}, Request{})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range plan.Processes {
		order = append(order, r.Name)
	}
	if got := strings.Join(order, " "); got != "base left right top" {
		t.Errorf("order %s", got)
	}
}

func TestRenderQuotedForm(t *testing.T) {
	got, missing := Render("cd {dir:q} && echo {dir} {{dir:q}}", map[string]string{"dir": "my robot $(touch X)"})
	want := `cd 'my robot $(touch X)' && echo my robot $(touch X) {dir:q}`
	if missing != "" || got != want {
		t.Errorf("got %q (missing %q), want %q", got, missing, want)
	}
	if _, missing := Render("{nope:q}", nil); missing != "nope" {
		t.Errorf("missing = %q", missing)
	}
}

// Issue 12, finding 4: a param no process of the operation uses is an
// error naming the params they use (a typo of -p was ignored).
func TestUnknownParamIsRefused(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(`
context: {session: s, params: {robot: kyon, rate: 1}}
a:
  cmd: run {robot} --rate {rate}
  variants:
    mode:
      - sim: {params: {world: empty}}
b: {cmd: other}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []map[string]string{{"robot": "x"}, {"rate": "5"}, {"world": "w"}, {"config_dir": "/x"}} {
		if _, err := cfg.Resolve([]string{"a"}, Request{Params: ok}); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	_, err = cfg.Resolve([]string{"a"}, Request{Params: map[string]string{"rte": "5"}})
	if err == nil || !strings.Contains(err.Error(), `unknown parameter "rte"`) || !strings.Contains(err.Error(), `did you mean "rate"?`) ||
		!strings.Contains(err.Error(), "rate, robot, world") {
		t.Errorf("typo: %v", err)
	}
	// A context param is known to every operation.
	if _, err := cfg.Resolve([]string{"b"}, Request{Params: map[string]string{"robot": "y"}}); err != nil {
		t.Errorf("context param: %v", err)
	}
	if _, err := cfg.Resolve([]string{"b"}, Request{Params: map[string]string{"world": "w"}}); err == nil {
		t.Error("a param only another process uses was accepted for b")
	}
}

// A restart_delay of 0 is raised to the floor, so the pause doubles.
func TestRestartDelayFloor(t *testing.T) {
	cfg, err := Parse("r.yaml", []byte("context: {session: s}\na: {cmd: x, restart: always, restart_delay: 0s, restart_delay_max: 0s, max_restarts: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Process("a").Restart; time.Duration(r.Delay) != MinRestartDelay || time.Duration(r.MaxDelay) != MinRestartDelay {
		t.Errorf("delay %s max %s, want the floor %s", time.Duration(r.Delay), time.Duration(r.MaxDelay), MinRestartDelay)
	}
}
