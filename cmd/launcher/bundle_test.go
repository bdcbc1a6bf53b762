package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// readBundle returns the files of a bundle, by their path under its top
// folder.
func readBundle(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode&0o077 != 0 {
			t.Errorf("%s: mode %o (a bundle holds logs: private)", h.Name, h.Mode)
		}
		b, _ := io.ReadAll(tr)
		_, rest, _ := strings.Cut(h.Name, "/")
		files[rest] = string(b)
	}
	return files
}

// Issue 16, a bundle after an incident: one .tar.gz with the config and its
// plugin, the resolved plan, status, process trees, the events launcher
// kept (those of earlier commands too), every process's log from every
// machine (one over SSH) and the versions, with a progress line per
// machine; a machine that is down is noted and the rest still bundled.
func TestBundleAfterAnIncident(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t, []string{"127.0.0.4"}, executortest.SSHDOptions{})
	h := w.hosts[0]
	plugin := filepath.Join(w.dir, "alert.lua")
	if err := os.WriteFile(plugin, []byte("-- alert plugin\nlocal launcher = require('launcher')\nlauncher.on('exited', function(ev) end)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadPort := executortest.FreePort(t, "127.0.0.9")
	w.writeConfig(fmt.Sprintf(`
context: {session: bun, plugins: [%q]}
here: {cmd: 'echo here-out; sleep 300', ready_check: 'true'}
there: {cmd: 'echo there-out; sleep 300', machine: %s, depends: [here]}
crash: {cmd: 'echo crash-out; exit 3'}
gone: {cmd: sleep 300, machine: nobody@127.0.0.9:%d}
`, plugin, h.Machine(), deadPort))
	w.mustRun("run", "there")
	w.run("run", "crash")
	w.waitState("crash", "DEAD")
	w.waitLog("bun", "crash", "crash-out")
	if !executortest.Poll(func() bool { return strings.Contains(remoteLog(h, "bun", "there"), "there-out") }) {
		t.Fatalf("there's log: %q", remoteLog(h, "bun", "there"))
	}
	out := filepath.Join(w.dir, "incident.tar.gz")
	r := w.mustRun("bundle", "-o", out, "--since", "1h")
	if !strings.Contains(r.stdout, "wrote "+out) || !strings.Contains(r.stdout, "incomplete: 1 problem") {
		t.Errorf("bundle: %s", r)
	}
	for _, want := range []string{"bundle: local: versions, 2 log(s)", "bundle: " + h.Machine() + ": versions, 1 log(s)", "bundle: nobody@127.0.0.9"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	files := readBundle(t, out)
	remote := "machines/" + safeName(h.Machine())
	checks := map[string][]string{
		"config/launcher.yaml":              {"there-out"},
		"config/plugins/alert.lua":          {"alert plugin"},
		"plan.json":                         {`"command_line"`, "there-out"},
		"status.json":                       {`"process": "there"`, `"state": "READY"`, `"state": "DEAD"`, "UNAVAILABLE"},
		"pstree.txt":                        {"sleep 300"},
		"events.jsonl":                      {`"event":"ready","process":"there"`, `"process":"crash"`},
		"versions/launcher.txt":             {"launcher "},
		"machines/local/versions.txt":       {"tmux ", "within 2 s of the clock of the computer that took the bundle"},
		"machines/local/logs/bun/here.log":  {"here-out", "[launcher] starting here"},
		"machines/local/logs/bun/crash.log": {"crash-out", "exited with code 3"},
		remote + "/versions.txt":            {"tmux "},
		remote + "/logs/bun/there.log":      {"there-out"},
		"errors.txt":                        {"nobody@127.0.0.9"},
	}
	for name, wants := range checks {
		got, ok := files[name]
		if !ok {
			t.Errorf("the bundle lacks %s (it has %v)", name, keys(files))
			continue
		}
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, got)
			}
		}
	}
	// Nothing half-written is left beside it.
	if m, _ := filepath.Glob(filepath.Join(w.dir, ".incident.tar.gz.part-*")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
	if got := w.state("there"); got != "READY" {
		t.Errorf("bundle changed there: %s", got)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestClockLine: versions.txt says how far a machine's clock is from the
// bundling computer's, from its reading in whole seconds.
func TestClockLine(t *testing.T) {
	sent := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	got := sent.Add(100 * time.Millisecond)
	for _, c := range []struct {
		unix int64
		want string
	}{
		{sent.Unix(), "within 2 s of"},
		{sent.Unix() + 600, "10m0s ahead of"},
		{sent.Unix() - 90, "1m30s behind"},
	} {
		out := string(clockLine([]byte(fmt.Sprintf("tmux 3.3a\nclock %d 2026-12-06T12:10:00+0000\nDebian\n", c.unix)), sent, got))
		want := "tmux 3.3a\nclock: 2026-12-06T12:10:00+0000, " + c.want + " the clock of the computer that took the bundle (2026-12-06T12:00:00+0000)\nDebian\n"
		if out != want {
			t.Errorf("clock %d:\n%s\nwant:\n%s", c.unix-sent.Unix(), out, want)
		}
	}
}
