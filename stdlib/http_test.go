package stdlib

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTP(t *testing.T) {
	var gotBody, gotType, gotHeader string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == "POST" {
			gotBody, gotType, gotHeader = string(b), r.Header.Get("Content-Type"), r.Header.Get("X-Robot")
		}
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
		}
		w.Header().Set("X-Reply", "yes")
		io.WriteString(w, "hello "+r.Method)
	}))
	defer srv.Close()
	got := runLua(t, `local http = require("http")
local res = http.get("`+srv.URL+`/health")
local post = http.post("`+srv.URL+`/hook", {event = "exited", exit_code = 3}, {headers = {["X-Robot"] = "kyon"}})
local miss = http.get("`+srv.URL+`/missing")
local none, err = http.get("http://127.0.0.1:1/", {timeout = 1})
return tostring(res.status), res.body, res.headers["X-Reply"], tostring(post.status), tostring(miss.status), tostring(none), tostring(err ~= nil)`)
	want := []string{"200", "hello GET", "yes", "200", "404", "nil", "true"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %q want %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(gotBody, `"event":"exited"`) || gotType != "application/json" || gotHeader != "kyon" {
		t.Errorf("post: %q %q %q", gotBody, gotType, gotHeader)
	}
}
