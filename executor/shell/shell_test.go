package shell

import (
	"os/exec"
	"strings"
	"testing"
)

var hostile = []string{
	"", "plain", "with space", "it's", `double "quoted"`, "$HOME", "$(id)", "`id`",
	"a;b", "a&&b", "a|b", `back\slash`, "new\nline", "tab\there", "'", "''", `\'`,
	"*", "?", "[a]", "~", "~root", "#comment", "a=b", "!bang", "{a,b}", "-n", "\x01ctl", "ünïcödé",
}

func TestQuoteRoundTripThroughSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("sh not found: %v", err)
	}
	// printf '%s\0' prints each argument as the shell parsed it.
	out, err := exec.Command(sh, "-c", "printf '%s\\0' "+Join(hostile)).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(hostile) {
		t.Fatalf("got %d words, want %d: %q", len(got), len(hostile), got)
	}
	for i := range hostile {
		if got[i] != hostile[i] {
			t.Errorf("word %d: got %q want %q", i, got[i], hostile[i])
		}
	}
}

func TestQuoteLeavesSafeWordsAlone(t *testing.T) {
	for _, s := range []string{"tmux", "-S", "/a/b.sock", "user@host:22", "a,b+c%"} {
		if Quote(s) != s {
			t.Errorf("Quote(%q) = %q, want unchanged", s, Quote(s))
		}
	}
	if Quote("a b") != "'a b'" {
		t.Errorf("Quote(a b) = %q", Quote("a b"))
	}
}

func FuzzQuote(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return // NUL cannot be part of an argument
		}
		out, err := exec.Command("sh", "-c", "printf '%s' "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v for %q", err, s)
		}
		if string(out) != s {
			t.Fatalf("round trip: got %q want %q", out, s)
		}
	})
}
