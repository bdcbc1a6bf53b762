package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// Issue 15: the reference GUI's ad-hoc commands and custom processes, only
// behind serve --allow-exec, with a token even on loopback, each use an
// event; a custom process lives until it is removed or serve stops.
func TestServeAllowExec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: ax}
base: {cmd: sleep 300}
`)
	marker := filepath.Join(e.dir, "ran")
	touch := map[string]any{"cmd": "touch " + marker}

	// Off by default: refused, and nothing ran.
	off := startServer(t, e, "")
	if got := off.do("POST", "/api/v1/exec", touch, nil); got != 403 {
		t.Errorf("exec without --allow-exec: %d, want 403", got)
	}
	if got := off.do("POST", "/api/v1/custom", map[string]any{"name": "x", "cmd": "touch " + marker}, nil); got != 403 {
		t.Errorf("custom without --allow-exec: %d, want 403", got)
	}
	var info map[string]any
	off.do("GET", "/api/v1/info", nil, &info)
	if info["allow_exec"] != false {
		t.Errorf("info without --allow-exec: allow_exec=%v", info["allow_exec"])
	}

	tokenFile := filepath.Join(e.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, e, "", "--allow-exec", "--token-file", tokenFile)
	// On loopback too, the token is required.
	if got := s.do("POST", "/api/v1/exec", touch, nil); got != 401 {
		t.Errorf("exec without the token on loopback: %d, want 401", got)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a refused exec ran")
	}
	s.token = "0123456789abcdef0123"
	events := s.stream("/api/v1/events", 0)

	var res struct {
		ExitCode int    `json:"exit_code"`
		TimedOut bool   `json:"timed_out"`
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
	}
	if got := s.do("POST", "/api/v1/exec", map[string]any{"machine": "local", "cmd": "echo out $((6*7)); echo err >&2; exit 3"}, &res); got != 200 {
		t.Fatalf("exec: %d", got)
	}
	if res.ExitCode != 3 || res.Stdout != "out 42\n" || res.Stderr != "err\n" || res.TimedOut {
		t.Errorf("exec answer: %+v", res)
	}
	events.next(t, "the exec's event", func(ev sseEvent) bool {
		m, _ := ev.Data["message"].(string)
		return ev.Data["event"] == "info" && strings.Contains(m, "exec on local: exit 3")
	})
	if got := s.do("POST", "/api/v1/exec", map[string]any{"cmd": "sleep 30", "timeout": "300ms"}, &res); got != 200 || !res.TimedOut {
		t.Errorf("exec past its timeout: %d %+v", got, res)
	}
	for _, bad := range []map[string]any{
		{"machine": "elsewhere.example", "cmd": "true"}, // not a machine of the config
		{"cmd": "  "},
		{"cmd": "true", "timeout": "forever"},
		{"cmd": "true", "machine": "local", "process": "base"},
	} {
		if got := s.do("POST", "/api/v1/exec", bad, nil); got != 400 {
			t.Errorf("exec %v: %d, want 400", bad, got)
		}
	}

	// A custom process: added, started, followed like the others, removed.
	var added struct {
		Process string `json:"process"`
		State   string `json:"state"`
		Config  struct {
			Custom bool `json:"custom"`
		} `json:"config"`
	}
	if got := s.do("POST", "/api/v1/custom", map[string]any{"name": "probe", "cmd": "echo custom-$((40+2)); sleep 300"}, &added); got != 201 {
		t.Fatalf("add custom: %d", got)
	}
	if added.Process != "probe" || added.State != "STOPPED" || !added.Config.Custom {
		t.Errorf("added: %+v", added)
	}
	for _, bad := range []map[string]any{
		{"name": "probe", "cmd": "true"},                       // exists
		{"name": "base", "cmd": "true"},                        // a config process
		{"name": "../x", "cmd": "true"},                        // not a name
		{"name": "far", "cmd": "true", "machine": "h.example"}, // not a machine of the config
		{"name": "nocmd"},
	} {
		if got := s.do("POST", "/api/v1/custom", bad, nil); got != 400 {
			t.Errorf("custom %v: %d, want 400", bad, got)
		}
	}
	if got := s.do("POST", "/api/v1/processes/probe/start?wait=ready", nil, nil); got != 200 {
		t.Fatalf("start probe: %d", got)
	}
	e.waitLog("ax", "probe", "custom-42")
	events.next(t, "the custom process's event", func(ev sseEvent) bool {
		m, _ := ev.Data["message"].(string)
		return ev.Data["process"] == "probe" && strings.Contains(m, "custom process added")
	})
	pidOf := func(name string) int {
		t.Helper()
		var row struct {
			PID *int `json:"pid"`
		}
		if got := s.do("GET", "/api/v1/processes/"+name, nil, &row); got != 200 || row.PID == nil {
			t.Fatalf("%s: %d, pid %v", name, got, row.PID)
		}
		return *row.PID
	}
	probe := pidOf("probe") // the CLI does not know probe: ask serve
	if got := s.do("DELETE", "/api/v1/custom/base", nil, nil); got != 400 {
		t.Errorf("removing a config process: %d, want 400", got)
	}
	if got := s.do("DELETE", "/api/v1/custom/probe", nil, nil); got != 200 {
		t.Fatalf("remove probe: %d", got)
	}
	if !executortest.Poll(func() bool { return !alive(probe) }) {
		t.Error("a removed custom process still runs")
	}
	if got := s.do("GET", "/api/v1/processes/probe", nil, nil); got != 404 {
		t.Errorf("a removed custom process is still listed: %d", got)
	}

	// One left running when serve stops is stopped with it.
	if got := s.do("POST", "/api/v1/custom", map[string]any{"name": "keeper", "cmd": "sleep 300"}, nil); got != 201 {
		t.Fatalf("add keeper: %d", got)
	}
	if got := s.do("POST", "/api/v1/processes/keeper/start?wait=ready", nil, nil); got != 200 {
		t.Fatalf("start keeper: %d", got)
	}
	keeper := pidOf("keeper")
	_ = s.bg.cmd.Process.Signal(syscall.SIGINT)
	s.bg.wait(t)
	if alive(keeper) {
		t.Errorf("keeper outlived serve:\n%s", s.bg.stderr())
	}
	if base := e.state("base"); base != "STOPPED" {
		t.Errorf("base: %s (nobody started it)", base)
	}
}
