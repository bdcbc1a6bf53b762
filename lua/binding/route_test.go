package binding

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// A route's headers: names of letters, digits and -, at most 64 of them;
// no line breaks in values.
func TestRouteMetaHeaderNames(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for _, c := range []struct {
		name, value string
		ok          bool
	}{
		{"Location", "/x", true},
		{"X-" + strings.Repeat("a", 62), "v", true},
		{"X-" + strings.Repeat("a", 63), "v", false},
		{"", "v", false},
		{"Bad Name", "v", false},
		{"X-Ok", "a\r\nInjected: 1", false},
	} {
		headers := L.NewTable()
		headers.RawSetString(c.name, lua.LString(c.value))
		meta := L.NewTable()
		meta.RawSetString("headers", headers)
		var a RouteAnswer
		err := routeMeta(meta, &a)
		if (err == nil) != c.ok {
			t.Errorf("header %q = %q: err %v, want ok %v", c.name, c.value, err, c.ok)
		}
		if c.ok && a.Headers[c.name] != c.value {
			t.Errorf("header %q: got %q", c.name, a.Headers[c.name])
		}
	}
}
