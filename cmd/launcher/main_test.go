package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMainUsageErrors drives Main in-process (no binary, no tmux): usage
// and config errors, their exit codes and messages. It is fast enough for
// make test-unit's kind of feedback.
func TestMainUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "launcher.yaml")
	os.WriteFile(cfg, []byte("context: {session: m}\na: {cmd: 'true'}\n"), 0o644)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("context: {session: m}\na: {cmd: 'true', depend: [b]}\n"), 0o644)
	env := map[string]string{"LAUNCHER_CONFIG": cfg, "HOME": dir, "LAUNCHER_STATE_DIR": filepath.Join(dir, "state")}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nosuchcmd"}, 2, `unknown command "nosuchcmd"`},
		{[]string{"run"}, 2, "run needs"},
		{[]string{"run", "nosuch"}, 2, `unknown process "nosuch"`},
		{[]string{"kill"}, 2, "--all"},
		{[]string{"status", "--bogus"}, 2, "bogus"},
		{[]string{"run", "a", "-p", "novalue"}, 2, "key:=value"},
		{[]string{"validate", "-c", broken}, 2, "broken.yaml:2"},
		{[]string{"validate", "-c", filepath.Join(dir, "missing.yaml")}, 2, "cannot read config"},
		{[]string{"plan", "a", "-c", cfg}, 0, "runs:"},
		{[]string{"help", "run"}, 0, "launcher run"},
	} {
		var out, errb bytes.Buffer
		code := Main(append([]string{"launcher"}, c.args...), strings.NewReader(""), &out, &errb, getenv)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d (want %d), output:\n%s%s", c.args, code, c.code, out.String(), errb.String())
		}
	}
}
