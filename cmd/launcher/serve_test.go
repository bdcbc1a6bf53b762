package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// server is a `launcher serve` under test.
type server struct {
	e     *tenv
	bg    *bg
	base  string // http://127.0.0.1:PORT
	token string
}

// startServer runs `launcher serve` on a free loopback port (listen, when
// given, replaces the host part) and waits until it answers.
func startServer(t testing.TB, e *tenv, listenHost string, args ...string) *server {
	t.Helper()
	port := executortest.FreePort(t, "127.0.0.1")
	if listenHost == "" {
		listenHost = "127.0.0.1"
	}
	s := &server{e: e, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.bg = e.start(append([]string{"serve", "--listen", net.JoinHostPort(listenHost, strconv.Itoa(port))}, args...)...)
	if !executortest.Poll(func() bool {
		resp, err := http.Get(s.base + "/api/v1/info")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}) {
		t.Fatalf("serve did not answer:\n%s\n%s", s.bg.stdout(), s.bg.stderr())
	}
	return s
}

// do sends a request and decodes a JSON answer into out (when non-nil).
func (s *server) do(method, path string, body any, out any, header ...string) int {
	s.e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.e.t.Fatal(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.e.t.Fatalf("%s %s: %d, not JSON: %v\n%s", method, path, resp.StatusCode, err, data)
		}
	}
	return resp.StatusCode
}

// sseEvent is one event read from the stream.
type sseEvent struct {
	ID   uint64
	Data map[string]any
	At   time.Time
}

// stream reads an SSE stream in the background; events arrive on a
// channel.
type stream struct {
	events chan sseEvent
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *server) stream(path string, lastID uint64) *stream {
	s.e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base+path, nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		s.e.t.Fatalf("stream %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	st := &stream{events: make(chan sseEvent, 100000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.ID, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.Data)
			case line == "" && ev.Data != nil:
				ev.At = time.Now()
				st.events <- ev
				ev = sseEvent{}
			}
		}
	}()
	s.e.t.Cleanup(func() { cancel(); <-st.done })
	return st
}

// next waits for the first event that match accepts.
func (st *stream) next(t *testing.T, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	deadline := time.After(executortest.Patience)
	var seen []string
	for {
		select {
		case ev := <-st.events:
			if match(ev) {
				return ev
			}
			seen = append(seen, fmt.Sprint(ev.Data))
		case <-deadline:
			t.Fatalf("no %s on the stream within %s; saw:\n%s", what, executortest.Patience, strings.Join(seen, "\n"))
			return sseEvent{}
		}
	}
}

func is(kind, process string) func(sseEvent) bool {
	return func(ev sseEvent) bool { return ev.Data["event"] == kind && ev.Data["process"] == process }
}

func TestServeAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	marker := filepath.Join(e.dir, "plugin-saw-ready")
	e.writeConfig(`
context:
  session: api
  plugins: [plugin.lua]
roscore:
  cmd: echo "roscore up"; sleep 300
  ready_check: 'true'
driver:
  cmd: echo "driver up"; sleep 300
  depends: [roscore]
  category: drivers
  show_ui: true
  variants:
    verbose: {cmd: "{cmd} -v"}
    mode:
      - fast: {cmd: "{cmd} --fast"}
      - slow: {cmd: "{cmd} --slow"}
planner:
  cmd: echo "planner up"; sleep 300
  depends: [driver]
`)
	os.WriteFile(filepath.Join(e.dir, "plugin.lua"), []byte(fmt.Sprintf(`
local launcher = require("launcher")
local fs = require("fs")
launcher.on("ready", "planner", function(ev) fs.write(%q, ev.process) end)
launcher.route("POST", "/robot/missions", function(req)
  return {id = 7, name = req.body.name}, {status = 201, headers = {Location = "/robot/missions/7"}}
end)
launcher.route("GET", "/robot/battery", function(req)
  launcher.emit("battery_checked", {level = 87, who = req.query.who})
  return {level = 87, who = req.query.who, processes = #launcher.status()}
end)
`, marker)), 0o644)
	s := startServer(t, e, "")
	ev := s.stream("/api/v1/events", 0)

	// A bad variant is refused before anything starts.
	var errBody struct {
		Error struct{ Code, Message string }
	}
	if code := s.do("POST", "/api/v1/processes/driver/start?wait=ready", map[string]any{"variants": []string{"turbo"}}, &errBody); code != 400 || errBody.Error.Code != "config_error" {
		t.Errorf("bad variant: %d %+v", code, errBody)
	}
	if code := s.do("POST", "/api/v1/processes/nosuch/start", nil, &errBody); code != 404 || errBody.Error.Code != "unknown_process" {
		t.Errorf("unknown process: %d %+v", code, errBody)
	}
	if st := e.status(); st["roscore"].State != "STOPPED" {
		t.Fatalf("a refused start started something: %+v", st)
	}

	// Bring the graph up through the API; its steps come in order on the
	// stream, labelled with the request.
	var started struct {
		Request string
		OK      bool
		Status  struct{ State string }
	}
	if code := s.do("POST", "/api/v1/processes/planner/start?wait=ready", map[string]any{"variants": []string{}}, &started); code != 200 || !started.OK || started.Status.State != "READY" {
		t.Fatalf("start: %d %+v", code, started)
	}
	// Until the request's end, and until the monitor (which also sees
	// other launchers' work) has seen planner READY.
	var order []string
	ended, watched := false, false
	for len(order) < 3 || !ended || !watched {
		x := ev.next(t, "the start's events", func(x sseEvent) bool {
			return x.Data["request"] == started.Request || is("state", "planner")(x)
		})
		switch {
		case x.Data["event"] == "ready":
			order = append(order, x.Data["process"].(string))
		case x.Data["event"] == "request":
			ended = x.Data["ok"] == true
		case x.Data["state"] == "READY":
			watched = true
		}
	}
	if strings.Join(order, ",") != "roscore,driver,planner" {
		t.Errorf("ready order: %v", order)
	}

	// The list carries state, config and GUI metadata.
	var list struct {
		Processes []struct {
			Process, State, Machine, Session string
			PID                              *int
			Restarts                         int
			Config                           struct {
				Depends  []string
				Category string
				ShowUI   *bool `json:"show_ui"`
				Variants []struct {
					Name    string
					Group   bool
					Choices []string
				}
			}
		}
	}
	s.do("GET", "/api/v1/processes", nil, &list)
	if len(list.Processes) != 3 {
		t.Fatalf("list: %+v", list)
	}
	for _, p := range list.Processes {
		if p.State != "READY" || p.PID == nil || p.Machine != "local" || p.Session != "api" {
			t.Errorf("row %+v", p)
		}
	}
	if d := list.Processes[1].Config; d.Category != "drivers" || d.ShowUI == nil || !*d.ShowUI || len(d.Variants) != 2 || !d.Variants[1].Group || strings.Join(d.Variants[1].Choices, ",") != "fast,slow" || d.Depends[0] != "roscore" {
		t.Errorf("driver config: %+v", d)
	}

	// A CLI kill shows on the stream: the server watches the machines,
	// not only its own operations (how soon: make bench).
	e.mustRun("kill", "planner")
	ev.next(t, "exited of planner", is("exited", "planner"))
	// And a CLI run shows as state changes.
	e.mustRun("run", "planner")
	ev.next(t, "planner READY", func(x sseEvent) bool {
		return x.Data["event"] == "state" && x.Data["process"] == "planner" && x.Data["state"] == "READY"
	})

	// The reference GUI server's routes, with their shapes.
	var compat struct {
		Processes []map[string]any
		Status    map[string]map[string]any
	}
	if code := s.do("GET", "/process/list", nil, &compat); code != 200 || len(compat.Processes) != 3 || compat.Processes[0]["name"] != "roscore" {
		t.Fatalf("compat list: %d %+v", code, compat)
	}
	if st := compat.Status["driver"]; st["state"] != "READY" || st["dead"] != false || st["run_pending"] != false {
		t.Errorf("compat status: %+v", st)
	}
	var ok struct{ Success bool }
	if code := s.do("PUT", "/process/planner/command/stop", nil, &ok); code != 200 || !ok.Success {
		t.Errorf("compat stop: %d %+v", code, ok)
	}
	if e.state("planner") != "STOPPED" {
		t.Errorf("compat stop left planner %s", e.state("planner"))
	}
	if code := s.do("PUT", "/process/planner/command/start", map[string]any{"variants": []string{}, "gui_field": 1}, &ok); code != 200 || !ok.Success || e.state("planner") != "READY" {
		t.Errorf("compat start: %d %+v", code, ok)
	}
	if code := s.do("PUT", "/process/driver/command/start", map[string]any{"variants": []string{"nosuch"}}, &ok); code != 400 || ok.Success {
		t.Errorf("compat start with a bad variant: %d %+v", code, ok)
	}

	// Logs, plan, pstree, validate, OpenAPI.
	var logs struct{ Lines []string }
	s.do("GET", "/api/v1/processes/roscore/log?lines=20", nil, &logs)
	if !strings.Contains(strings.Join(logs.Lines, "\n"), "roscore up") {
		t.Errorf("log: %+v", logs)
	}
	ls := s.stream("/api/v1/processes/roscore/log/stream?lines=5", 0)
	ls.next(t, "a log line", func(x sseEvent) bool { return strings.Contains(fmt.Sprint(x.Data["line"]), "roscore up") })
	var plan struct {
		Roots     []string
		Processes []struct{ Name, Cmd string }
	}
	if code := s.do("GET", "/api/v1/plan?process=driver&variant=verbose&variant=slow", nil, &plan); code != 200 || len(plan.Processes) != 2 || plan.Processes[1].Cmd != `echo "driver up"; sleep 300 -v --slow` {
		t.Errorf("plan: %d %+v", code, plan)
	}
	var trees struct {
		Trees []struct {
			Process string
			Root    *struct{ PID int }
		}
	}
	s.do("GET", "/api/v1/pstree?process=roscore", nil, &trees)
	if len(trees.Trees) != 1 || trees.Trees[0].Root == nil || trees.Trees[0].Root.PID == 0 {
		t.Errorf("pstree: %+v", trees)
	}
	var valid struct{ OK bool }
	if s.do("GET", "/api/v1/validate", nil, &valid); !valid.OK {
		t.Errorf("validate: %+v", valid)
	}
	var spec struct {
		OpenAPI string
		Paths   map[string]any
	}
	if s.do("GET", "/api/v1/openapi.json", nil, &spec); !strings.HasPrefix(spec.OpenAPI, "3.") || spec.Paths["/api/v1/events"] == nil || spec.Paths["/process/list"] == nil {
		t.Errorf("openapi: %+v", spec)
	}

	// Resuming with Last-Event-ID misses nothing that is still kept.
	first := ev.next(t, "any numbered event", func(x sseEvent) bool { return x.ID > 0 })
	ev.cancel()
	again := s.stream("/api/v1/events", first.ID-1)
	if x := again.next(t, "the resumed event", func(sseEvent) bool { return true }); x.ID != first.ID {
		t.Errorf("resumed at %d, want %d", x.ID, first.ID)
	}

	// Plugins: handlers see the server's events; a route answers JSON.
	if b, err := os.ReadFile(marker); err != nil || string(b) != "planner" {
		t.Errorf("plugin handler: %q %v", b, err)
	}
	var battery struct {
		Level     int
		Who       string
		Processes int
	}
	userEv := s.stream("/api/v1/events", 0)
	if code := s.do("GET", "/robot/battery?who=ops", nil, &battery); code != 200 || battery.Level != 87 || battery.Who != "ops" || battery.Processes != 3 {
		t.Errorf("plugin route: %d %+v", code, battery)
	}
	// A route sets its status and headers (issue 13, bug 8); a miss and a
	// wrong method are the API's JSON errors, not plain text.
	resp, err := http.Post(s.base+"/robot/missions", "application/json", strings.NewReader(`{"name":"dock"}`))
	if err != nil {
		t.Fatal(err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Location") != "/robot/missions/7" || !strings.Contains(string(created), `"name": "dock"`) {
		t.Errorf("a route's status and headers: %d %v %s", resp.StatusCode, resp.Header, created)
	}
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/robot/nosuch", 404, "not_found"},
		{"DELETE", "/robot/battery", 405, "method_not_allowed"},
		{"GET", "/api/v1/nosuch", 404, "not_found"},
	} {
		if code := s.do(c.method, c.path, nil, &errBody); code != c.status || errBody.Error.Code != c.code {
			t.Errorf("%s %s: %d %+v, want %d %s as JSON", c.method, c.path, code, errBody, c.status, c.code)
		}
	}
	// A plugin's own event (launcher.emit) is on the stream with its data.
	user := userEv.next(t, "the plugin's user event", func(x sseEvent) bool { return x.Data["event"] == "user" })
	if data, _ := user.Data["data"].(map[string]any); user.Data["name"] != "battery_checked" || data["level"] != float64(87) || data["who"] != "ops" {
		t.Errorf("user event on the stream: %v", user.Data)
	}

	// Stop everything.
	var all struct{ OK bool }
	if code := s.do("POST", "/api/v1/stop?wait=done", nil, &all); code != 200 || !all.OK {
		t.Errorf("stop all: %d %+v", code, all)
	}
	for p, st := range e.status() {
		if st.State != "STOPPED" {
			t.Errorf("after stop all, %s is %s", p, st.State)
		}
	}
}

// What a browser or another host could be tricked into: each is refused and
// changes nothing.
func TestServeSecurity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: sec}\na: {cmd: sleep 300}\n")
	s := startServer(t, e, "")
	var body struct {
		Error struct{ Code string }
	}
	// A page of another site posting to the API.
	if code := s.do("POST", "/api/v1/processes/a/start", nil, &body, "Origin", "http://evil.example"); code != 403 || body.Error.Code != "cross_origin" {
		t.Errorf("cross-origin POST: %d %+v", code, body)
	}
	if code := s.do("PUT", "/process/a/command/start", nil, &body, "Origin", "http://evil.example"); code != 403 {
		t.Errorf("cross-origin PUT: %d", code)
	}
	// DNS rebinding: a name that resolves to 127.0.0.1 for the attacker.
	if code := s.do("GET", "/api/v1/processes", nil, &body, "Host", "evil.example:8750"); code != 403 || body.Error.Code != "forbidden_host" {
		t.Errorf("rebound host: %d %+v", code, body)
	}
	// Another local user connecting to the loopback server (any account
	// can reach 127.0.0.1; a start with params runs shell code as us).
	uid, gid := executortest.EnsureTestUser(t)
	other := exec.Command("bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET /api/v1/processes HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3`, "bash", strings.TrimPrefix(s.base, "http://127.0.0.1:"))
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := other.CombinedOutput(); err != nil || !strings.Contains(string(out), " 403 ") || !strings.Contains(string(out), "forbidden_user") {
		t.Errorf("another user's request: %v\n%s", err, out)
	}
	// Names that try to leave the process namespace.
	for _, path := range []string{"/api/v1/processes/..%2Fa/start", "/api/v1/processes/a%2F..%2Fa/start", "/api/v1/processes/%2E%2E/start"} {
		code := s.do("POST", path, nil, nil)
		if code/100 == 2 {
			t.Errorf("%s: %d", path, code)
		}
	}
	req, _ := http.NewRequest("POST", s.base+"/api/v1/processes/../processes/a/start", nil)
	req.URL.Opaque = "/api/v1/processes/../processes/a/start" // sent as written
	if resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req); err != nil {
		t.Errorf("dot-dot path: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("dot-dot path: %d", resp.StatusCode)
		}
	}
	if e.state("a") != "STOPPED" {
		t.Fatalf("a refused request started a")
	}
	// The same origin is fine.
	if code := s.do("POST", "/api/v1/processes/a/start?wait=ready", nil, nil, "Origin", s.base); code != 200 {
		t.Errorf("same-origin POST: %d", code)
	}

	// Not on loopback: a token is required. 0.0.0.0 is not loopback; the
	// test still talks to it over 127.0.0.1.
	tokenFile := filepath.Join(e.dir, "token")
	os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600)
	open := startServer(t, e, "0.0.0.0", "--token-file", tokenFile)
	if code := open.do("GET", "/api/v1/processes", nil, &body); code != 401 || body.Error.Code != "unauthorized" {
		t.Errorf("no token: %d %+v", code, body)
	}
	if code := open.do("GET", "/api/v1/events", nil, nil, "Authorization", "Bearer wrong-token-wrong-token"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	open.token = "0123456789abcdef0123"
	if code := open.do("GET", "/api/v1/processes", nil, nil); code != 200 {
		t.Errorf("with the token: %d", code)
	}
	// A token file others can read is refused, exit 2.
	os.Chmod(tokenFile, 0o644)
	if r := e.run("serve", "--listen", "0.0.0.0:0", "--token-file", tokenFile); r.code != 2 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("readable token file: %s", r)
	}
	// Without a token file, a non-loopback server makes one, 0600, in the
	// state directory, and prints it once.
	gen := startServer(t, e, "0.0.0.0")
	path := filepath.Join(e.stateDir, "serve-token")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated token file: %v %v", fi, err)
	}
	tok, _ := os.ReadFile(path)
	gen.token = strings.TrimSpace(string(tok))
	if !executortest.Poll(func() bool { return strings.Contains(gen.bg.stdout(), "token: "+gen.token) }) {
		t.Errorf("token not printed:\n%s", gen.bg.stdout())
	}
	if code := gen.do("GET", "/api/v1/processes", nil, nil); code != 200 {
		t.Errorf("generated token: %d", code)
	}
	// Bad flags change nothing and say what to do.
	if r := e.run("serve", "--listen", "nonsense"); r.code != 2 || !strings.Contains(r.stderr, "HOST:PORT") {
		t.Errorf("bad --listen: %s", r)
	}
}

// Many stream clients are held with bounded memory; a client that stops
// reading is dropped, and the server and the other clients go on.
func TestServeManyClientsAndASlowOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: many}
a: {cmd: sleep 300}
chatty: {cmd: 'for i in $(seq 1 60000); do echo "line $i of some output that fills the buffers of a slow reader"; done; sleep 300'}
`)
	s := startServer(t, e, "", "--stream-queue", "32")
	const n = 1000
	var wg sync.WaitGroup
	got := make(chan int, n)
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /api/v1/events HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(s.base, "http://"))
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			// Each reads until it has seen the stop of a.
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.Contains(line, `"event":"stopped"`) && strings.Contains(line, `"process":"a"`) {
					got <- i
					return
				}
			}
		}(i, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	var info struct {
		Clients int `json:"stream_clients"`
	}
	if !executortest.Poll(func() bool { s.do("GET", "/api/v1/info", nil, &info); return info.Clients >= n }) {
		t.Fatalf("%d stream clients connected, want %d", info.Clients, n)
	}
	rss := func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.bg.cmd.Process.Pid))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				kb, _ := strconv.Atoi(strings.Fields(l)[1])
				return kb
			}
		}
		return 0
	}
	held := rss()
	// A slow client: a tiny receive window, and it never reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error { return setRcvBuf(rc, 2048) }}
	slow, err := d.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /api/v1/events?output=chatty&lines=100000 HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(s.base, "http://"))
	if !executortest.Poll(func() bool { s.do("GET", "/api/v1/info", nil, &info); return info.Clients == n+1 }) {
		t.Fatalf("the slow client did not connect: %d clients", info.Clients)
	}
	if st, ok := serverSideState(t, slow); !ok || st != "01" {
		t.Fatalf("the server's end of the slow client's connection: state %q (found: %v), want 01 (ESTABLISHED)", st, ok)
	}
	// Every client gets what happens.
	e.mustRun("run", "a")
	if code := s.do("POST", "/api/v1/processes/a/stop?wait=done", nil, nil); code != 200 {
		t.Fatalf("stop: %d", code)
	}
	deadline := time.After(executortest.Patience)
	for seen := 0; seen < n; seen++ {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("only %d of %d clients saw the stop", seen, n)
		}
	}
	// Lots of output for the slow client, which cannot take it: it is
	// dropped (the server closes its connection).
	if code := s.do("POST", "/api/v1/processes/chatty/start?wait=ready", nil, nil); code != 200 {
		t.Fatalf("chatty: %d", code)
	}
	// It is dropped while it does not read (the server stops counting it)…
	if !executortest.Poll(func() bool { s.do("GET", "/api/v1/info", nil, &info); return info.Clients == n }) {
		t.Errorf("the slow client is still served: %d clients", info.Clients)
	}
	// …and the server closes its end of the connection (its FIN is
	// queued). Looked at in the kernel's socket table, not by reading the
	// rest: with the client's tiny receive window the rest drains at the
	// pace of TCP's zero-window probes, which back off to two minutes (CI
	// run 103 read 725 KB of it, then nothing for three minutes).
	executortest.Eventually(t, "the server closes the slow client's connection", func() bool {
		st, ok := serverSideState(t, slow)
		return !ok || st != "01" // gone, or past ESTABLISHED (FIN sent)
	})
	if code := s.do("GET", "/api/v1/info", nil, &info); code != 200 {
		t.Errorf("server after the slow client: %d", code)
	}
	// Memory: a thousand held clients cost little, and stay bounded.
	if kb := rss(); kb > 200*1024 {
		t.Errorf("server RSS %d KiB with %d clients (%d KiB when they connected)", kb, n, held)
	}
	t.Logf("server RSS: %d KiB with %d clients connected, %d KiB after the burst", held, n, rss())
}

// serverSideState is the TCP state (/proc/net/tcp's "st", "01" is
// ESTABLISHED) of the server's end of c, a loopback IPv4 connection; ok is
// false when that socket is gone.
func serverSideState(t *testing.T, c net.Conn) (state string, ok bool) {
	t.Helper()
	addr := func(a net.Addr) string {
		ta := a.(*net.TCPAddr)
		ip := ta.IP.To4()
		if ip == nil {
			t.Fatalf("%s is not an IPv4 address", a)
		}
		return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip), ta.Port)
	}
	local, remote := addr(c.RemoteAddr()), addr(c.LocalAddr())
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == local && f[2] == remote {
			return f[3], true
		}
	}
	return "", false
}

// setRcvBuf shrinks a socket's receive buffer (a slow reader's window).
func setRcvBuf(rc syscall.RawConn, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) }); err != nil {
		return err
	}
	return serr
}

// A restart by a restart policy reaches the stream as a `restarted` event,
// and with restart_dependants the server restarts the dependants.
func TestServeRestartEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.writeConfig(fmt.Sprintf(`
context: {session: sr}
flaky:
  cmd: 'while [ ! -e %[1]s/go ]; do sleep 0.05; done; if [ ! -e %[1]s/crashed ]; then touch %[1]s/crashed; exit 4; fi; sleep 300'
  restart: on-failure
  restart_delay: 50ms
  restart_dependants: true
user:
  cmd: sleep 300
  depends: [flaky]
solo:
  cmd: 'while [ ! -e %[1]s/go ]; do sleep 0.05; done; if [ ! -e %[1]s/solo-crashed ]; then touch %[1]s/solo-crashed; exit 5; fi; sleep 300'
  restart: on-failure
  restart_delay: 50ms
  ready_check: 'true'
`, e.dir))
	s := startServer(t, e, "")
	ev := s.stream("/api/v1/events", 0)
	for _, p := range []string{"user", "solo"} {
		if code := s.do("POST", "/api/v1/processes/"+p+"/start?wait=ready", nil, nil); code != 200 {
			t.Fatalf("start %s: %d", p, code)
		}
	}
	before := e.pid("user")
	// Let the monitor see both running before the crash.
	ev.next(t, "user READY", func(x sseEvent) bool { return is("state", "user")(x) && x.Data["state"] == "READY" })
	os.WriteFile(filepath.Join(e.dir, "go"), nil, 0o644)
	// In any order: flaky's restart, the dependant's restart behind it,
	// and solo READY again (a restart drops the ready mark of a process
	// with a ready check; the server runs the check again).
	var restarted sseEvent
	userStarted, soloReady := false, false
	for restarted.Data == nil || !userStarted || !soloReady {
		x := ev.next(t, "flaky's restart, user's start and solo ready again", func(x sseEvent) bool {
			return is("restarted", "flaky")(x) || is("started", "user")(x) ||
				is("ready", "solo")(x) && strings.Contains(fmt.Sprint(x.Data["message"]), "after a restart")
		})
		switch x.Data["process"] {
		case "flaky":
			restarted = x
		case "user":
			userStarted = true
		case "solo":
			soloReady = true
		}
	}
	if restarted.Data["exit_code"] != float64(4) || restarted.Data["restarts"] != float64(1) {
		t.Errorf("restarted event: %+v", restarted.Data)
	}
	st := e.waitState("user", "READY")
	if st.PID == nil || *st.PID == before {
		t.Errorf("user was not restarted: pid %v, before %d", st.PID, before)
	}
	if st := e.status()["flaky"]; st.Restarts != 1 || st.State != "READY" && st.State != "RUNNING" {
		t.Errorf("flaky: %+v", st)
	}
	if st := e.status()["solo"]; st.State != "READY" || st.Restarts != 1 {
		t.Errorf("solo after its restart: %+v", st)
	}
}

// Issue 15, bug 1: after serve restarts, a client resuming with an id of
// the earlier run is told it missed events (a gap: the page reloads)
// instead of resuming nothing; ids of the new run are larger.
func TestServeRestartIsAGapForOldIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "context: {session: sr}\nrobot_state: {cmd: sleep 300}\n")
	s := startServer(t, e, "")
	ev := s.stream("/api/v1/events", 0)
	e.mustRun("run", "robot_state")
	old := ev.next(t, "an event with an id", func(x sseEvent) bool { return x.ID > 0 })
	_ = s.bg.cmd.Process.Signal(syscall.SIGTERM)
	s.bg.wait(t)
	e.mustRun("kill", "robot_state")
	s2 := startServer(t, e, "")
	again := s2.stream("/api/v1/events", old.ID)
	again.next(t, "a gap for the earlier run's id", func(x sseEvent) bool { return x.Data["event"] == "gap" })
	e.mustRun("run", "robot_state")
	if x := again.next(t, "an event of the new run", func(x sseEvent) bool { return x.ID > 0 }); x.ID <= old.ID {
		t.Errorf("id %d of the new run is not above %d of the earlier one", x.ID, old.ID)
	}
}
