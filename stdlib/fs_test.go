package stdlib

import (
	"path/filepath"
	"testing"
)

func TestFS(t *testing.T) {
	dir := t.TempDir()
	got := runLua(t, `local fs = require("fs")
local p = "`+filepath.Join(dir, "a.txt")+`"
assert(fs.write(p, "hello"))
local none, err = fs.read("`+filepath.Join(dir, "missing")+`")
return fs.read(p), tostring(fs.exists(p)), tostring(fs.exists(p .. "x")), tostring(#fs.glob("`+dir+`/*.txt")), tostring(none), tostring(err ~= nil)`)
	want := []string{"hello", "true", "false", "1", "nil", "true"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %q want %q", i, got[i], want[i])
		}
	}
}
