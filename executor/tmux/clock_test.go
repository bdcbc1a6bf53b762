package tmux

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/local"
)

// TestLearnClock: how far a machine's clock is ahead of ours, from its
// reading (whole seconds) in a listing sent and answered at known times.
func TestLearnClock(t *testing.T) {
	sent := time.Unix(1_800_000_000, 300e6)
	for _, c := range []struct {
		name  string
		took  time.Duration
		unix  int64
		prior time.Duration
		want  time.Duration
	}{
		{"same clock", 40 * time.Millisecond, 1_800_000_000, 0, 0},
		{"within 2 s counts as the same", 40 * time.Millisecond, 1_800_000_001, 0, 0},
		{"ten minutes ahead", 40 * time.Millisecond, 1_800_000_600, 0, 600*time.Second + 180*time.Millisecond},
		{"a minute behind", 40 * time.Millisecond, 1_799_999_940, 0, -60*time.Second + 180*time.Millisecond},
		{"back in step", 40 * time.Millisecond, 1_800_000_000, time.Hour, 0},
		{"a slow listing keeps the last", 3 * time.Second, 1_800_000_900, time.Hour, time.Hour},
	} {
		m := &Machine{}
		m.clockAhead.Store(int64(c.prior))
		got := m.learnClock(sent, sent.Add(c.took), c.unix)
		if ahead := time.Duration(m.clockAhead.Load()); ahead != c.want {
			t.Errorf("%s: ahead %s, want %s", c.name, ahead, c.want)
		}
		if c.want == 0 && !got.IsZero() || c.want != 0 && !got.Equal(sent.Add(c.want)) {
			t.Errorf("%s: the machine's clock at the listing is %v", c.name, got)
		}
	}
}

// remoteLike runs commands here but names another machine, so a Machine
// takes its remote paths; it counts the commands that read the clock.
type remoteLike struct {
	executor.Host
	reads atomic.Int64
}

func (r *remoteLike) Machine() string { return "tester@127.0.0.1" }

func (r *remoteLike) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	if strings.Contains(strings.Join(cmd.Args, " "), "date +%s") {
		r.reads.Add(1)
	}
	return r.Host.Run(ctx, cmd)
}

// TestTheClockIsReadEvery10sAtMost: a remote listing reads the machine's
// clock when the last reading is over 10 s old (serve lists several times
// a second; each reading is a process on the robot), and a machine whose
// clock agrees with ours gives listings no clock of their own.
func TestTheClockIsReadEvery10sAtMost(t *testing.T) {
	executortest.RequireTool(t, "tmux", "sh", "date")
	dir := t.TempDir()
	host := &remoteLike{Host: local.Host{}}
	m, err := New(context.Background(), host, Options{Socket: filepath.Join(dir, "s"), Config: "/dev/null", StateDir: filepath.Join(dir, "state"), Home: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", filepath.Join(dir, "s"), "kill-server").Run() })
	ctx := context.Background()
	slow := 0 // listings over a second (a loaded machine): their reading is not trusted, and the next reads again
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		snap, err := m.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(t0) > time.Second {
			slow++
		}
		if !snap.Clock.IsZero() || snap.Offset() != 0 {
			t.Errorf("listing %d: the machine's clock is ours, yet the listing has clock %v", i, snap.Clock)
		}
	}
	n := host.reads.Load()
	if n < 1 || n > int64(1+slow) {
		t.Errorf("3 listings (%d over a second) read the clock %d times, want 1", slow, n)
	}
	m.clockRead.Store(time.Now().Add(-11 * time.Second).UnixNano())
	if _, err := m.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if got := host.reads.Load(); got != n+1 {
		t.Errorf("a listing 11 s after the last reading: %d readings in all, want %d", got, n+1)
	}
}
