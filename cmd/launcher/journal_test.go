package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor/executortest"
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

// An event cut short by a full disk costs that event alone: the next one,
// once there is room, starts on a line of its own and reads back. It was
// appended to the torn line, and both were lost.
func TestJournalAfterAFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		executortest.Skip(t, "cannot mount a tmpfs: "+string(out))
	}
	defer exec.Command("umount", dir).Run()
	j := &journal{dir: func() (string, error) { return dir, nil }, unsub: func() {}}
	j.write(engine.Event{Time: time.Now(), Kind: engine.Info, Process: "before", Message: "x"})
	// Fill the disk but for a few bytes, less than an event.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{4096, 1} {
		buf := make([]byte, size)
		for {
			if _, err := filler.Write(buf); err != nil {
				break
			}
		}
	}
	filler.Close()
	// A long message, so the write is cut short rather than refused.
	j.write(engine.Event{Time: time.Now(), Kind: engine.Info, Process: "torn", Message: strings.Repeat("m", 8000)})
	// tmpfs has room left in the journal's last page: the write is cut
	// short there, not refused.
	if !j.torn {
		t.Fatal("the write was not cut short: the test's premise does not hold")
	}
	os.Remove(filepath.Join(dir, "filler"))
	j.write(engine.Event{Time: time.Now(), Kind: engine.Info, Process: "after", Message: "x"})
	j.close()
	got := string(journalSince(journalPath(dir), 0, time.Now().Add(time.Minute)))
	if !strings.Contains(got, `"process":"before"`) || !strings.Contains(got, `"process":"after"`) {
		t.Errorf("read back:\n%s", got)
	}
}
