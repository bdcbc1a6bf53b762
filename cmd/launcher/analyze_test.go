package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 16, `launcher analyze` after a bring-up: each process's time from
// start to ready, and the critical chain (what the target waited for).
func TestAnalyzeShowsTheCriticalChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	flag := filepath.Join(e.dir, "slow-ready")
	e.writeConfig(fmt.Sprintf(`
context: {session: an}
core: {cmd: sleep 300}
slow: {cmd: 'sleep 0.4; touch %s; sleep 300', ready_check: 'test -e %s', depends: [core]}
fast: {cmd: sleep 300, depends: [core]}
app: {cmd: sleep 300, depends: [slow, fast]}
idle: {cmd: sleep 300}
`, flag, flag))
	e.mustRun("run", "app")
	r := e.mustRun("analyze", "app")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var chain []string
	for _, l := range lines {
		if f := strings.Fields(strings.TrimLeft(l, " └─")); len(f) == 3 && strings.HasPrefix(f[1], "@") {
			chain = append(chain, f[0])
		}
	}
	if strings.Join(chain, ",") != "app,slow,core" || !strings.HasPrefix(lines[len(lines)-2], "└─slow @") || !strings.HasPrefix(lines[len(lines)-1], "  └─core @") {
		t.Fatalf("critical chain of app:\n%s", r.stdout)
	}
	var out struct {
		Processes []struct {
			Process string   `json:"process"`
			Took    *float64 `json:"took"`
		} `json:"processes"`
		Chain []struct {
			Process string  `json:"process"`
			At      float64 `json:"at"`
			Took    float64 `json:"took"`
		} `json:"critical_chain"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("analyze", "app", "--json").stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Processes) != 4 || len(out.Chain) != 3 || out.Chain[1].Process != "slow" {
		t.Fatalf("--json: %+v", out)
	}
	// slow slept 0.4 s before it could pass its check.
	if out.Chain[1].Took < 0.4 || out.Chain[0].At < out.Chain[1].At || out.Chain[1].At < out.Chain[2].At {
		t.Errorf("chain times: %+v", out.Chain)
	}
	for _, p := range out.Processes {
		if p.Took == nil {
			t.Errorf("%s has no ready time", p.Process)
		}
	}
	if r := e.mustRun("analyze"); !strings.Contains(r.stdout, "READY AFTER") || strings.Count(r.stdout, "\n") != 5 || strings.Contains(r.stdout, "idle") {
		t.Errorf("analyze:\n%s", r.stdout)
	}
	if r := e.run("analyze", "idle"); r.code != 1 || !strings.Contains(r.stderr, "has not run") {
		t.Errorf("analyze of a process that never ran: %s", r)
	}
	if r := e.run("analyze", "a", "b"); r.code != 2 {
		t.Errorf("analyze a b: %s", r)
	}
}
