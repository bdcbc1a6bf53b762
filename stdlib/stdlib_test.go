package stdlib

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// runLua runs code as a task with the standard library preloaded and
// returns its results as strings (errors fail the test unless wantErr).
func runLua(t *testing.T, code string) []string {
	t.Helper()
	out, err := tryLua(t, context.Background(), code, nil)
	if err != nil {
		t.Fatalf("lua: %v", err)
	}
	return out
}

func tryLua(t *testing.T, ctx context.Context, code string, logw *bytes.Buffer) ([]string, error) {
	t.Helper()
	rt, err := host.New(ctx, host.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	o := Options{}
	if logw != nil {
		o.Log = logw
	}
	Preload(rt, o)
	fn, err := rt.L.LoadString(code)
	if err != nil {
		t.Fatal(err)
	}
	var ret []lua.LValue
	var terr error
	done := false
	rt.Spawn("test", fn, nil, func(r []lua.LValue, err error) { ret, terr, done = r, err, true })
	if err := rt.Loop(func() bool { return done }); err != nil {
		return nil, err
	}
	var out []string
	for _, v := range ret {
		out = append(out, v.String())
	}
	return out, terr
}

func TestStubsDocumentEveryModuleFunction(t *testing.T) {
	for mod, fns := range Modules {
		data, err := Lua.ReadFile("types/" + mod + ".lua")
		if err != nil {
			t.Errorf("no stub for module %s", mod)
			continue
		}
		stub := string(data)
		for _, f := range fns {
			if !strings.Contains(stub, "function "+mod+"."+f+"(") {
				t.Errorf("stub of %s lacks %s", mod, f)
			}
		}
		for _, line := range strings.Split(stub, "\n") {
			if name, ok := strings.CutPrefix(line, "function "+mod+"."); ok {
				name = name[:strings.Index(name, "(")]
				found := false
				for _, f := range fns {
					found = found || f == name
				}
				if !found {
					t.Errorf("stub of %s documents %s, which the module does not have", mod, name)
				}
			}
		}
	}
}

func TestModulesLoadWithTheirFunctions(t *testing.T) {
	for mod, fns := range Modules {
		for _, f := range fns {
			got := runLua(t, `return type(require("`+mod+`").`+f+`)`)
			if got[0] != "function" {
				t.Errorf("%s.%s is %s", mod, f, got[0])
			}
		}
	}
}

func TestTimeModule(t *testing.T) {
	got := runLua(t, `local time = require("time")
local t0 = time.now()
return tostring(t0 > 1.7e9), time.format(0, "2006-01-02"), tostring(time.since(t0) >= 0)`)
	if got[0] != "true" || !strings.HasPrefix(got[1], "1970-01-0") || got[2] != "true" {
		t.Errorf("%q", got)
	}
	// monotonic: not the epoch, and it moves forward (the loop ends once
	// it has moved 10 ms; the package's test timeout bounds a hang).
	got = runLua(t, `local time = require("time")
local m0 = time.monotonic()
local m = m0
while m - m0 < 0.01 do
  local m2 = time.monotonic()
  assert(m2 >= m, "went back")
  m = m2
end
return tostring(m0 >= 0 and m0 < 1e6)`)
	if got[0] != "true" {
		t.Errorf("monotonic: %q", got)
	}
}

func TestLogModule(t *testing.T) {
	var buf bytes.Buffer
	if _, err := tryLua(t, context.Background(), `require("log").warn("%s has %d lines", "roscore", 3)`, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "warn  roscore has 3 lines") {
		t.Errorf("%q", buf.String())
	}
}

func TestBlockingCallsHonourCancellation(t *testing.T) {
	// A server on loopback that never answers.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	// The call's own timeout is an hour: returning at all is the
	// cancellation (the package's test timeout bounds a hang).
	ret, err := tryLua(t, ctx, `return require("http").get("`+srv.URL+`", {timeout = 3600})`, nil)
	if err == nil && (len(ret) == 0 || ret[0] != "nil") {
		t.Errorf("a cancelled call answered %v", ret)
	}
}
