package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine"
)

// The journal rotates at its size into events.jsonl.1 (one kept), loses no
// event doing so, and journalSince reads both, oldest first, within the
// window asked for.
func TestJournalRotatesAndReadsBack(t *testing.T) {
	dir := t.TempDir()
	old := journalMax
	journalMax = 2000
	defer func() { journalMax = old }()
	j := &journal{dir: func() (string, error) { return dir, nil }, unsub: func() {}}
	start := time.Now().Add(-2 * time.Hour)
	for i := range 40 {
		at := start
		if i >= 10 {
			at = time.Now()
		}
		j.write(engine.Event{Time: at, Kind: engine.Info, Process: fmt.Sprintf("p%02d", i), Message: "x"})
	}
	j.close()
	path := journalPath(dir)
	cur, _ := os.ReadFile(path)
	rot, _ := os.ReadFile(path + ".1")
	if len(rot) == 0 || len(cur) == 0 || int64(len(cur)) > journalMax {
		t.Fatalf("not rotated: %d and %d bytes", len(rot), len(cur))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %o", fi.Mode().Perm())
	}
	all := journalSince(path, 0, time.Now())
	recent := journalSince(path, time.Hour, time.Now())
	// The oldest events may be gone with a second rotation: what is there
	// is in order, and the last hour has exactly the 30 recent ones when
	// both files still hold them.
	lines := bytes.Split(bytes.TrimSpace(all), []byte("\n"))
	last := ""
	for _, l := range lines {
		p := string(l[bytes.Index(l, []byte(`"process":"`))+11:][:3])
		if p <= last {
			t.Fatalf("out of order at %s after %s", p, last)
		}
		last = p
	}
	if last != "p39" {
		t.Errorf("the last event is %s", last)
	}
	if n := bytes.Count(recent, []byte("\n")); n > 30 || n == 0 || !bytes.Contains(recent, []byte(`"p39"`)) || bytes.Contains(recent, []byte(`"p00"`)) {
		t.Errorf("the last hour has %d events:\n%s", n, recent)
	}
}
