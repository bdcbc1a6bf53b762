package ssh

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/tmux"
)

// TestRemoteSpawnRefusesALinkedLogAlone: remote spawns write their env
// files in the invocation that makes their windows; one whose log was
// replaced by a symbolic link (after the plan's check) is refused with
// nothing left behind, and the spawns batched with it start all the same.
func TestRemoteSpawnRefusesALinkedLogAlone(t *testing.T) {
	w := newWorld(t)
	uid, gid := executortest.EnsureTestUser(t)
	m, h := sshMachineAt(t, w, "127.0.0.2", executortest.SSHDOptions{})
	// A first spawn puts the state and log directories in place.
	if _, err := m.Spawn(ctx(t), executor.SpawnSpec{Session: "lk", Name: "first", Script: "sleep 300"}); err != nil {
		t.Fatal(err)
	}
	bad, err := m.LogPath(ctx(t), "lk", "bad")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", bad); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(bad, uid, gid); err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "bad", "c", "d"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Spawn(ctx(t), executor.SpawnSpec{Session: "lk", Name: n, Script: "sleep 300"})
		}()
	}
	wg.Wait()
	var unsafe *tmux.UnsafePathError
	for i, n := range names {
		if n == "bad" {
			if !errors.As(errs[i], &unsafe) {
				t.Errorf("the spawn with a linked log: %v, want an UnsafePathError", errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("spawn %s beside it: %v", n, errs[i])
		}
	}
	snap, err := m.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{}
	for _, win := range snap.Windows {
		if win.Session == "lk" {
			made[win.Name] = true
		}
	}
	if made["bad"] || !made["a"] || !made["c"] || !made["d"] {
		t.Errorf("windows made: %v", made)
	}
	if target, _ := os.Readlink(bad); target != "/etc/passwd" {
		t.Errorf("the link was changed: %q", target)
	}
	// Every env file is read and removed by its pane: none stays for the
	// refused spawn (poll: the panes read theirs as they start).
	runDir := filepath.Join(h.StateDir, "run")
	if fi, err := os.Stat(runDir); err != nil || !fi.IsDir() {
		t.Fatalf("no run directory at %s: %v", runDir, err)
	}
	if !executortest.Poll(func() bool {
		left, _ := filepath.Glob(filepath.Join(runDir, "*.env"))
		return len(left) == 0
	}) {
		left, _ := filepath.Glob(filepath.Join(runDir, "*.env"))
		t.Errorf("env files left: %v", left)
	}
}

// TestRemoteListingSaysWhichPanesBegan: a remote listing tells a pane that
// has begun its command (its env file read and removed) from one whose env
// file is still there, which a stop's C-c must wait for.
func TestRemoteListingSaysWhichPanesBegan(t *testing.T) {
	w := newWorld(t)
	uid, gid := executortest.EnsureTestUser(t)
	m, h := sshMachineAt(t, w, "127.0.0.2", executortest.SSHDOptions{})
	began, err := m.Spawn(ctx(t), executor.SpawnSpec{Session: "bg", Name: "began", Script: "sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := m.Spawn(ctx(t), executor.SpawnSpec{Session: "bg", Name: "waiting", Script: "sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(h.StateDir, "run")
	if !executortest.Poll(func() bool {
		left, _ := filepath.Glob(filepath.Join(runDir, "*.env"))
		return len(left) == 0
	}) {
		t.Fatal("the panes did not read their env files")
	}
	// As if "waiting" were still reading its .bashrc.
	f := filepath.Join(runDir, waiting.Marks.Tag+"-0123abcd.env")
	if err := os.WriteFile(f, []byte("export X=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(f, uid, gid)
	// An env file emptied by its prologue (read; its log writer removes it
	// soon after) says the pane began, as a removed one does.
	e := filepath.Join(runDir, began.Marks.Tag+"-4567cdef.env")
	if err := os.WriteFile(e, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(e, uid, gid)
	snap, err := m.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, win := range snap.Windows {
		got[win.Name] = win.Begun
	}
	if !got["began"] || got["waiting"] || len(snap.Windows) < 2 || began.ID == "" {
		t.Errorf("Begun by window: %v (%d windows)", got, len(snap.Windows))
	}
}
