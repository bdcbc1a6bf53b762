package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/robotlauncher/launcher/executor/executortest"
)

func init() {
	// The event and log streams are text: what was read of them is checked
	// as a string.
	openapi3filter.RegisterBodyDecoder("text/event-stream", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
}

// apiDoc loads the server's own OpenAPI document and checks it is valid.
func apiDoc(t *testing.T, s *server) routers.Router {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/api/v1/openapi.json", nil)
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	// Every answer is described: a schema for each body of each status.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, r := range op.Responses.Map() {
				if r.Value == nil || len(r.Value.Content) == 0 {
					t.Errorf("%s %s %s: no body described", method, path, status)
				}
				for ct, mt := range r.Value.Content {
					if mt.Schema == nil {
						t.Errorf("%s %s %s %s: no schema", method, path, status, ct)
					}
				}
			}
		}
	}
	doc.Servers = openapi3.Servers{{URL: s.base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

// exchange sends a request and checks its answer against the document: a
// status it declares, and a body its schema for that status accepts.
// Streams are read until their first bytes. It returns the status.
func exchange(t *testing.T, s *server, router routers.Router, method, path string, body any, header ...string) int {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(raw))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var got []byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got = []byte(line)
	} else {
		got, _ = io.ReadAll(resp.Body)
	}
	vreq, _ := http.NewRequest(method, s.base+path, bytes.NewReader(raw))
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		t.Errorf("%s %s: not in the document: %v", method, path, err)
		return resp.StatusCode
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(got)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s → %d does not match the document: %v\n%s", method, path, resp.StatusCode, err, got)
	}
	return resp.StatusCode
}

// Issue 15 bug 6: every route, with its answers of success and of error,
// matches the OpenAPI document the server publishes (validated with
// kin-openapi): every status sent is declared, every body has a schema
// that accepts it.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
context: {session: oa}
base: {cmd: sleep 300, ready_check: 'true'}
app: {cmd: 'echo hi; sleep 300', depends: [base]}
`)
	s := startServer(t, e, "")
	router := apiDoc(t, s)
	type call struct {
		method, path string
		body         any
		want         int
		header       []string
	}
	calls := []call{
		{"GET", "/api/v1/info", nil, 200, nil},
		{"POST", "/api/v1/processes/app/start", nil, 202, nil},
		{"POST", "/api/v1/processes/app/start?wait=ready", map[string]any{"timeout": "1m"}, 200, nil},
		{"POST", "/api/v1/processes/app/start", map[string]any{"timeout": "soon"}, 400, nil},
		{"POST", "/api/v1/processes/app/start", map[string]any{"bogus": 1}, 400, nil},
		{"POST", "/api/v1/processes/nosuch/start", nil, 404, nil},
		{"POST", "/api/v1/processes/app/start", nil, 403, []string{"Origin", "http://elsewhere.example"}},
		{"GET", "/api/v1/processes", nil, 200, nil},
		{"GET", "/api/v1/processes/app", nil, 200, nil},
		{"GET", "/api/v1/processes/nosuch", nil, 404, nil},
		{"GET", "/api/v1/processes/..bad", nil, 400, nil},
		{"GET", "/api/v1/processes/app/log?lines=5", nil, 200, nil},
		{"GET", "/api/v1/processes/nosuch/log", nil, 404, nil},
		{"GET", "/api/v1/processes/app/log/stream", nil, 200, nil},
		{"GET", "/api/v1/plan?process=app", nil, 200, nil},
		{"GET", "/api/v1/plan", nil, 400, nil},
		{"GET", "/api/v1/plan?process=nosuch", nil, 404, nil},
		{"GET", "/api/v1/pstree", nil, 200, nil},
		{"GET", "/api/v1/pstree?process=nosuch", nil, 404, nil},
		{"GET", "/api/v1/validate", nil, 200, nil},
		{"GET", "/api/v1/events", nil, 200, nil},
		{"GET", "/api/v1/openapi.json", nil, 200, nil},
		{"GET", "/process/list", nil, 200, nil},
		{"PUT", "/process/app/command/start", map[string]any{"variants": []string{}}, 200, nil},
		{"PUT", "/process/app/command/bogus", nil, 404, nil},
		{"PUT", "/process/nosuch/command/start", nil, 404, nil},
		{"POST", "/api/v1/processes/app/restart?wait=ready", nil, 200, nil},
		{"POST", "/api/v1/processes/app/stop?wait=done", map[string]any{"force": true}, 200, nil},
		{"POST", "/api/v1/processes/app/stop", nil, 202, nil},
		{"PUT", "/process/app/command/stop", nil, 200, nil},
		{"POST", "/api/v1/stop?wait=done", nil, 200, nil},
		{"POST", "/api/v1/stop", nil, 202, nil},
		{"POST", "/api/v1/exec", map[string]any{"cmd": "true"}, 403, nil}, // no --allow-exec
		{"POST", "/api/v1/custom", map[string]any{"name": "c", "cmd": "true"}, 403, nil},
		{"DELETE", "/api/v1/custom/c", nil, 403, nil},
	}
	for _, c := range calls {
		if got := exchange(t, s, router, c.method, c.path, c.body, c.header...); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	// Wait for the last stop before the machine's processes go away with
	// the test.
	if !executortest.Poll(func() bool { return e.state("base") == "STOPPED" }) {
		t.Errorf("base: %s", e.state("base"))
	}

	// Not on loopback: 401 without the token.
	tokenFile := filepath.Join(e.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := startServer(t, e, "0.0.0.0", "--token-file", tokenFile)
	open.token = "0123456789abcdef0123"
	router = apiDoc(t, open)
	open.token = ""
	for _, p := range []string{"/api/v1/processes", "/process/list"} {
		if got := exchange(t, open, router, "GET", p, nil); got != 401 {
			t.Errorf("GET %s without the token: %d", p, got)
		}
	}
	open.token = "0123456789abcdef0123"
	if got := exchange(t, open, router, "GET", "/api/v1/processes", nil); got != 200 {
		t.Errorf("with the token: %d", got)
	}

	// The routes of --allow-exec.
	ex := startServer(t, e, "", "--allow-exec", "--token-file", tokenFile)
	ex.token = "0123456789abcdef0123"
	router = apiDoc(t, ex)
	for _, c := range []call{
		{"POST", "/api/v1/exec", map[string]any{"cmd": "echo hi", "timeout": "5s"}, 200, nil},
		{"POST", "/api/v1/exec", map[string]any{"process": "base", "cmd": "exit 2"}, 200, nil},
		{"POST", "/api/v1/exec", map[string]any{"cmd": ""}, 400, nil},
		{"POST", "/api/v1/exec", map[string]any{"process": "nosuch", "cmd": "true"}, 404, nil},
		{"POST", "/api/v1/custom", map[string]any{"name": "extra", "cmd": "sleep 300"}, 201, nil},
		{"POST", "/api/v1/custom", map[string]any{"name": "extra", "cmd": "sleep 300"}, 400, nil},
		{"DELETE", "/api/v1/custom/extra", nil, 200, nil},
		{"DELETE", "/api/v1/custom/extra", nil, 404, nil},
		{"DELETE", "/api/v1/custom/base", nil, 400, nil},
	} {
		if got := exchange(t, ex, router, c.method, c.path, c.body, c.header...); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
}
