package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var wantRe = regexp.MustCompile(`^# error: (?:(\d+)(?::(\d+))?: )?(.*)$`)

// TestBrokenCorpus loads every config under testdata/broken and checks that
// each error announced in its header is reported at that line and column.
func TestBrokenCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("corpus has %d configs, want at least 30", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants [][]string
			for _, line := range strings.Split(string(data), "\n") {
				if m := wantRe.FindStringSubmatch(line); m != nil {
					wants = append(wants, m)
				}
			}
			if len(wants) == 0 {
				t.Fatal("no '# error:' header")
			}
			_, err = Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			for _, w := range wants {
				found := false
				for _, e := range errs {
					if w[1] != "" && strconv.Itoa(e.Pos.Line) != w[1] {
						continue
					}
					if w[2] != "" && strconv.Itoa(e.Pos.Col) != w[2] {
						continue
					}
					if e.Pos.File != f {
						continue
					}
					if strings.Contains(e.Error(), w[3]) {
						found = true
					}
				}
				if !found {
					t.Errorf("want error %q at %s:%s, got:\n%v", w[3], w[1], w[2], err)
				}
			}
		})
	}
}

func TestLoadConcertLauncherConfig(t *testing.T) {
	cfg, err := Load("testdata/kyon.yaml")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if cfg.Session != "kyon" {
		t.Errorf("session = %q", cfg.Session)
	}
	lidar := cfg.Process("lidar")
	if lidar == nil {
		t.Fatal("no lidar")
	}
	if lidar.Machine != "kyon@10.24.15.102" || lidar.Docker != "kyon-noble-ros2-dev-1" {
		t.Errorf("aliases not resolved: machine=%q docker=%q", lidar.Machine, lidar.Docker)
	}
	if lidar.Extra["show_ui"] != true || lidar.Extra["category"] != "sensors" {
		t.Errorf("extra keys not kept: %v", lidar.Extra)
	}
	homing := cfg.Process("homing")
	if homing.Persistent {
		t.Error("homing: persistent: no should be false")
	}
	// Merge key: base keys merged, explicit keys win.
	ec := cfg.Process("ecat")
	if ec.Machine != "kyon@10.24.15.102" || ec.Session != "ecat" {
		t.Errorf("merge: machine=%q session=%q", ec.Machine, ec.Session)
	}
	if got := strings.Join(cfg.Sessions(), ","); got != "kyon,ecat" {
		t.Errorf("sessions = %s", got)
	}
}

func TestCheckMachine(t *testing.T) {
	good := []string{"local", "", "robot@10.0.0.2", "robot@10.0.0.2:2222", "host", "host:22", "alias-name", "u@[::1]:22", "u@::1"}
	bad := []string{"robot@", "@host", "u@h:0", "u@h:99999", "u@h:x", "a b", "h;rm", "-oProxyCommand=x"}
	for _, m := range good {
		if err := CheckMachine(m); err != nil {
			t.Errorf("CheckMachine(%q) = %v, want ok", m, err)
		}
	}
	for _, m := range bad {
		if err := CheckMachine(m); err == nil {
			t.Errorf("CheckMachine(%q) ok, want error", m)
		}
	}
}

func TestValidProcessName(t *testing.T) {
	for _, n := range []string{"roscore", "a.b", "x_1-2", "A9"} {
		if !ValidProcessName(n) {
			t.Errorf("%q rejected", n)
		}
	}
	for _, n := range []string{"", "a b", "a;b", "-x", ".hidden", "a/b", "context", "a:b", "$(id)", strings.Repeat("a", 101)} {
		if ValidProcessName(n) {
			t.Errorf("%q accepted", n)
		}
	}
}

// Restart keys under context are every process's default; a process's own
// keys win, and `restart: no` (a YAML boolean) turns the policy off.
func TestRestartPolicyDefaults(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "l.yaml")
	os.WriteFile(f, []byte(`
context: {session: s, restart: on-failure, restart_delay: 2s, max_restarts: 7}
a: {cmd: x}
b: {cmd: x, restart: always, restart_delay_max: 1m, restart_dependants: true}
c: {cmd: x, restart: no}
d: {cmd: x, persistent: false, restart: no}
`), 0o644)
	cfg, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Restart{
		"a": {Mode: RestartOnFailure, Delay: Duration(2 * time.Second), MaxDelay: Duration(DefaultRestartDelayMax), Max: 7, Window: Duration(DefaultRestartWindow)},
		"b": {Mode: RestartAlways, Delay: Duration(2 * time.Second), MaxDelay: Duration(time.Minute), Max: 7, Window: Duration(DefaultRestartWindow), Dependants: true},
		"c": {Mode: RestartNo, Delay: Duration(2 * time.Second), MaxDelay: Duration(DefaultRestartDelayMax), Max: 7, Window: Duration(DefaultRestartWindow)},
	}
	for name, w := range want {
		if got := cfg.Process(name).Restart; got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
}

// Issue 16, logs that last: log_max_size and log_keep under context are
// every process's default and a process's own win; the default keeps a
// robot's disk safe; bad values are errors at their line.
func TestLogRotationKeys(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "l.yaml")
	os.WriteFile(f, []byte(`
context: {session: s, log_max_size: 200KB, log_keep: 3}
a: {cmd: x}
b: {cmd: x, log_max_size: 1.5GB}
c: {cmd: x, log_max_size: 0, log_keep: 1}
d: {cmd: x, log_max_size: 4096}
`), 0o644)
	cfg, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]LogRotation{
		"a": {MaxSize: 200 << 10, Keep: 3},
		"b": {MaxSize: 3 << 29, Keep: 3},
		"c": {MaxSize: 0, Keep: 1},
		"d": {MaxSize: 4096, Keep: 3},
	}
	for name, w := range want {
		if got := cfg.Process(name).Log; got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	os.WriteFile(f, []byte("context: {session: s}\na: {cmd: x}\n"), 0o644)
	if cfg, err = Load(f); err != nil || cfg.Process("a").Log != (LogRotation{MaxSize: DefaultLogMaxSize, Keep: DefaultLogKeep}) {
		t.Errorf("default rotation: %+v %v", cfg.Process("a").Log, err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"a: {cmd: x, log_max_size: 10 parsecs}", `l.yaml:3:27: process "a": log_max_size: "10 parsecs" is not a size`},
		{"a: {cmd: x, log_max_size: 10}", "is less than 1KB"},
		{"a: {cmd: x, log_max_size: [1]}", "must be a size, not a list"},
		{"a: {cmd: x, log_keep: 0}", `l.yaml:3:23: process "a": log_keep must be how many rotated logs to keep`},
		{"a: {cmd: x, log_keep: many}", "log_keep must be"},
		{"a: {cmd: x, log_kep: 2}", "log_keep"},
	} {
		os.WriteFile(f, []byte("context: {session: s}\n\n"+c.yaml+"\n"), 0o644)
		_, err := Load(f)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.yaml, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "512": 512, "200KB": 200 << 10, "10MB": 10 << 20, "10mb": 10 << 20,
		"1GB": 1 << 30, "2 MiB": 2 << 20, "1.5K": 1536, "7b": 7, "3M": 3 << 20} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MB", "-1MB", "10 TB", "1e3", "ten"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}
