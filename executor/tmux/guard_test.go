package tmux

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor"
)

// TestGuardFindsAWindowByName: the spawn guard, which looks a window up by
// name (not by visiting every window), refuses a name the session already
// has (a foreign window, a dead one, a name with a dot) and allows one that
// only another session has; the guard over every window (a tmux that
// refuses the lookup) does the same.
func TestGuardFindsAWindowByName(t *testing.T) {
	for _, full := range []bool{false, true} {
		name := "lookup"
		if full {
			name = "every-window"
		}
		t.Run(name, func(t *testing.T) {
			m := newLocal(t)
			m.fullGuard.Store(full)
			ctx := context.Background()
			tm := func(args ...string) {
				t.Helper()
				if out, err := exec.Command("tmux", append([]string{"-S", m.opts.Socket}, args...)...).CombinedOutput(); err != nil {
					t.Fatalf("tmux %v: %v: %s", args, err, out)
				}
			}
			spawn := func(session, name string) error {
				_, err := m.Spawn(ctx, executor.SpawnSpec{Session: session, Name: name, Script: "sleep 300"})
				return err
			}
			if err := spawn("bench", "first"); err != nil {
				t.Fatal(err)
			}
			// Windows launcher did not make: a live one, a dead one, one
			// with a dot in its name, and one in another session (that
			// session's current window).
			tm("new-window", "-d", "-t", "=bench:", "-n", "foreign", "sleep 300")
			// One command list: the option is set before the pane's exit
			// is handled.
			tm("new-window", "-d", "-t", "=bench:", "-n", "gone", "true", ";", "set-option", "-w", "-t", "=bench:=gone", "remain-on-exit", "on")
			tm("new-window", "-d", "-t", "=bench:", "-n", "a.b", "sleep 300")
			tm("new-session", "-d", "-s", "other", "-n", "elsewhere", "sleep 300")
			for _, n := range []string{"foreign", "gone", "a.b", "first"} {
				if err := spawn("bench", n); !errors.Is(err, executor.ErrRaced) {
					t.Errorf("spawning %s, which session bench has: %v, want ErrRaced", n, err)
				}
			}
			for _, n := range []string{"elsewhere", "second", "a.c"} {
				if err := spawn("bench", n); err != nil {
					t.Errorf("spawning %s, which session bench has not: %v", n, err)
				}
			}
			out, err := exec.Command("tmux", "-S", m.opts.Socket, "list-windows", "-t", "=bench:", "-F", "#{window_name}").Output()
			if err != nil {
				t.Fatal(err)
			}
			names := strings.Fields(string(out))
			sort.Strings(names)
			want := "a.b a.c elsewhere first foreign gone second"
			if strings.Join(names, " ") != want {
				t.Errorf("session bench has windows %v, want %s (one each)", names, want)
			}
		})
	}
}

// TestGuardOnATmuxThatRefusesAMissingTarget: on a tmux whose if-shell
// fails when its target is not there (emulated here by a tmux in PATH that
// puts a select-window of the same target before the guard's if-shell),
// the first spawn falls back to the guard over every window, and from then
// on every spawn uses it: spawns succeed, a taken name is still refused.
func TestGuardOnATmuxThatRefusesAMissingTarget(t *testing.T) {
	m := newLocal(t)
	real, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	wrapper := `#!/bin/bash
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = if-shell ] && [ "$2" = -F ] && [ "$3" = -t ] && [[ "$4" == *:=* ]]; then
    args+=(select-window -t "$4" ';')
  fi
  args+=("$1")
  shift
done
exec ` + real + ` "${args[@]}"
`
	if err := os.WriteFile(filepath.Join(bin, "tmux"), []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx := context.Background()
	spawn := func(name string) error {
		_, err := m.Spawn(ctx, executor.SpawnSpec{Session: "bench", Name: name, Script: "sleep 300"})
		return err
	}
	if err := spawn("first"); err != nil { // makes the session (no guard)
		t.Fatal(err)
	}
	// Spawns at the same moment all meet the refusal: each tries again.
	errs := make(chan error, 4)
	for _, n := range []string{"second", "third", "fourth", "fifth"} {
		go func() { errs <- spawn(n) }()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a concurrent spawn: %v", err)
		}
	}
	if !m.fullGuard.Load() {
		t.Error("the machine did not switch to the guard over every window")
	}
	if err := spawn("second"); !errors.Is(err, executor.ErrRaced) {
		t.Errorf("spawning second again: %v, want ErrRaced", err)
	}
	out, err := exec.Command(real, "-S", m.opts.Socket, "list-windows", "-t", "=bench:", "-F", "#{window_name}").Output()
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Fields(string(out))
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "fifth first fourth second third" {
		t.Errorf("session bench has windows %q, want fifth first fourth second third", got)
	}
}
