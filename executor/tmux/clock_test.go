package tmux

import (
	"testing"
	"time"
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
