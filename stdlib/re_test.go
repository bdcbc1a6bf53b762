package stdlib

import (
	"strings"
	"testing"
)

func TestRE(t *testing.T) {
	got := runLua(t, `local re = require("re")
local whole, port = re.find("listening on port 11311", "port (\\d+)")
return tostring(re.match("core started", "^core")), whole, port, re.gsub("a1b22", "\\d+", "#"), tostring(re.find("x", "y"))`)
	want := []string{"true", "port 11311", "11311", "a#b#", "nil"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %q want %q", i, got[i], want[i])
		}
	}
	if _, err := tryLua(t, t.Context(), `require("re").match("x", "(")`, nil); err == nil || !strings.Contains(err.Error(), "bad regular expression") {
		t.Errorf("bad pattern: %v", err)
	}
}
