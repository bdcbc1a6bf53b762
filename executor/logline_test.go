package executor

import "testing"

func TestStripTimestamp(t *testing.T) {
	for in, want := range map[string]string{
		"[2026-12-05 06:58:02.487] hello": "hello",
		// Issue 13, item 7: an empty line kept its 26-byte stamp.
		"[2026-12-05 06:58:02.487] ": "",
		"no stamp":                   "no stamp",
		"[short] x":                  "[short] x",
	} {
		if got := StripTimestamp(in); got != want {
			t.Errorf("StripTimestamp(%q) = %q, want %q", in, got, want)
		}
	}
}
