// Package api is launcher's HTTP face, `launcher serve`: a JSON API over one
// engine, the reference GUI server's two routes, a Server-Sent Events
// stream of the engine's events (and of changes other launchers make), the
// embedded web dashboard, and the routes Lua plugins add. It also holds the
// JSON shapes the CLI prints (status --json), so both faces agree.
package api

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/lua/binding"
)

//go:embed dashboard/index.html openapi.json
var files embed.FS

// DefaultListen is where `launcher serve` listens unless told otherwise.
const DefaultListen = "127.0.0.1:8750"

// Routes are the HTTP routes Lua plugins added (the Lua host implements it).
type Routes interface {
	Routes() []*binding.Route
	CallRoute(ctx context.Context, r *binding.Route, req binding.RouteRequest) (binding.RouteAnswer, error)
}

// Options configure a Server.
type Options struct {
	Engine *engine.Engine
	// Lua adds the plugins' routes; nil: none.
	Lua Routes
	// Token, when set, is required of every request: `Authorization:
	// Bearer TOKEN`, or the cookie a browser gets from `/?token=TOKEN`.
	Token string
	// Loopback: the listener is on loopback only and there is no token;
	// requests must then name a loopback host (no DNS rebinding) and come
	// from the server's own user (see ConnContext).
	Loopback bool
	// MonitorEvery is how often the machines are polled for changes no
	// operation of this server made (default 200ms).
	MonitorEvery time.Duration
	// Validate re-reads the config file (GET /api/v1/validate).
	Validate func() error
	// Version is reported by /api/v1/info.
	Version string
	// Log receives one line per failed operation (default: discarded).
	Log io.Writer
	// StreamQueue bounds the events queued for one stream client before
	// it is dropped as too slow (default 256); StreamKeep is how many
	// events are kept for clients that resume (default 4096).
	StreamQueue, StreamKeep int
	// AllowExec turns on ad-hoc commands (POST /api/v1/exec) and custom
	// processes (POST /api/v1/custom, DELETE /api/v1/custom/{name}); they
	// also need a Token.
	AllowExec bool
}

// Server serves the API of one engine.
type Server struct {
	o     Options
	e     *engine.Engine
	hub   *hub
	mux   *http.ServeMux
	seq   atomic.Uint64
	ctx   context.Context
	wg    sync.WaitGroup
	unsub func()
}

// New creates a server whose operations live as long as ctx (a client
// that disconnects does not cancel a bring-up it asked for). Start begins
// watching the machines.
func New(ctx context.Context, o Options) *Server {
	if o.MonitorEvery == 0 {
		o.MonitorEvery = 200 * time.Millisecond
	}
	if o.StreamQueue == 0 {
		o.StreamQueue = 256
	}
	if o.StreamKeep == 0 {
		o.StreamKeep = 4096
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &Server{o: o, e: o.Engine, hub: newHub(o.StreamKeep, o.StreamQueue, uint64(time.Now().UnixMicro())), mux: http.NewServeMux(), ctx: ctx}
	s.routes()
	return s
}

// Start connects the engine's events to the stream and starts the
// monitor (and the supervisor of restart_dependants) until ctx ends.
func (s *Server) Start() {
	s.unsub = s.e.Bus().Subscribe(nil, func(ev engine.Event) { s.hub.publish(ev) })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.e.Supervise(s.ctx, s.o.MonitorEvery)
	}()
}

// Wait waits for the operations under way to end (after ctx ended).
func (s *Server) Wait() {
	s.wg.Wait()
	if s.unsub != nil {
		s.unsub()
	}
}

// Handler is the server's HTTP handler, with its checks in front.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.guard) }

func (s *Server) routes() {
	m := s.mux
	// The reference GUI server's routes, with their shapes.
	m.HandleFunc("GET /process/list", s.compatList)
	m.HandleFunc("PUT /process/{name}/command/{command}", s.compatCommand)
	// API v1.
	m.HandleFunc("GET /api/v1/info", s.info)
	m.HandleFunc("GET /api/v1/processes", s.list)
	m.HandleFunc("GET /api/v1/processes/{name}", s.one)
	m.HandleFunc("POST /api/v1/processes/{name}/start", s.start)
	m.HandleFunc("POST /api/v1/processes/{name}/stop", s.stop)
	m.HandleFunc("POST /api/v1/processes/{name}/restart", s.restart)
	m.HandleFunc("POST /api/v1/stop", s.stopAll)
	m.HandleFunc("GET /api/v1/processes/{name}/log", s.logTail)
	m.HandleFunc("GET /api/v1/processes/{name}/log/stream", s.logStream)
	m.HandleFunc("GET /api/v1/plan", s.plan)
	m.HandleFunc("GET /api/v1/pstree", s.pstree)
	m.HandleFunc("GET /api/v1/validate", s.validate)
	m.HandleFunc("GET /api/v1/events", s.events)
	m.HandleFunc("POST /api/v1/exec", s.exec)
	m.HandleFunc("POST /api/v1/custom", s.addCustom)
	m.HandleFunc("DELETE /api/v1/custom/{name}", s.removeCustom)
	m.HandleFunc("GET /api/v1/openapi.json", s.static("openapi.json", "application/json"))
	m.HandleFunc("GET /{$}", s.static("dashboard/index.html", "text/html; charset=utf-8"))
	if s.o.Lua != nil {
		for _, r := range s.o.Lua.Routes() {
			m.HandleFunc(r.Method+" "+r.Path, s.luaRoute(r))
		}
	}
}

// guard authenticates, refuses requests a browser could be tricked into
// sending (another origin, a rebound DNS name), then routes.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if s.o.Loopback && !loopbackHost(r.Host) {
		writeErr(w, http.StatusForbidden, "forbidden_host", fmt.Sprintf("host %q is not this machine's loopback: use http://127.0.0.1 or http://localhost", r.Host))
		return
	}
	if s.o.Loopback {
		if err := samePeer(r.Context()); err != nil {
			writeErr(w, http.StatusForbidden, "forbidden_user", err.Error())
			return
		}
	}
	if s.o.Token != "" {
		if r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Get("token") != "" {
			// The dashboard's login: the token moves into a cookie only
			// this site sends, and out of the address bar.
			if !s.tokenOK(r.URL.Query().Get("token")) {
				writeErr(w, http.StatusUnauthorized, "unauthorized", "wrong token")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: "launcher_token", Value: s.o.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		tok := ""
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			tok = strings.TrimPrefix(h, "Bearer ")
		} else if c, err := r.Cookie("launcher_token"); err == nil {
			tok = c.Value
		}
		if !s.tokenOK(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="launcher"`)
			writeErr(w, http.StatusUnauthorized, "unauthorized", "send the token as `Authorization: Bearer TOKEN` (launcher serve printed it, or see --token-file)")
			return
		}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if err := sameOrigin(r); err != nil {
			writeErr(w, http.StatusForbidden, "cross_origin", err.Error())
			return
		}
	}
	s.mux.ServeHTTP(&jsonMiss{ResponseWriter: w}, r)
}

// jsonMiss turns the mux's own plain-text 404 and 405 (no route, or a
// route without this method, plugins' routes included) into the API's JSON
// error; answers of the handlers pass through untouched.
type jsonMiss struct {
	http.ResponseWriter
	swallow bool
}

func (j *jsonMiss) WriteHeader(code int) {
	h := j.Header()
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		j.swallow = true
		if code == http.StatusNotFound {
			writeErr(j.ResponseWriter, code, "not_found", "no such route (the API is under /api/v1, see /api/v1/openapi.json)")
		} else {
			writeErr(j.ResponseWriter, code, "method_not_allowed", "this route does not take that method; allowed: "+h.Get("Allow"))
		}
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonMiss) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

// Flush passes through for the event stream.
func (j *jsonMiss) Flush() {
	if f, ok := j.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (j *jsonMiss) Unwrap() http.ResponseWriter { return j.ResponseWriter }

func (s *Server) tokenOK(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.o.Token)) == 1
}

// sameOrigin refuses a state change a page of another site asked a browser
// to send. Clients that are not browsers send no Origin and pass.
func sameOrigin(r *http.Request) error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("cross-site request refused")
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("request from origin %q refused: state changes are accepted from this server's own pages only", o)
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine's
// loopback.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddr reports whether a listen address is on loopback only.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ---- errors

// apiError is the body of every error: {"error": {"code", "message"}}.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// badRequest is a request the API cannot act on (bad JSON, bad name).
type badRequest struct{ msg string }

func (b *badRequest) Error() string { return b.msg }

// classify maps an error to the HTTP status and code with the CLI's
// meanings: unknown process, config error, conflict, machine unreachable,
// a process that failed.
func classify(err error) (int, string) {
	var unknown *config.UnknownProcessError
	var cerr *config.Error
	var cerrs config.Errors
	var conflict *engine.ConflictError
	var perr *engine.ProcessError
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, "bad_request"
	case errors.As(err, &unknown):
		return http.StatusNotFound, "unknown_process"
	case errors.As(err, &cerr), errors.As(err, &cerrs):
		return http.StatusBadRequest, "config_error"
	case errors.As(err, &conflict):
		return http.StatusConflict, "conflict"
	case executor.IsUnavailable(err):
		return http.StatusServiceUnavailable, "machine_unreachable"
	case engine.IsPlanRefusal(err):
		// Checked before acting: nothing changed (an unsafe or full log).
		return http.StatusConflict, "refused"
	case errors.As(err, &perr):
		return http.StatusInternalServerError, "process_failed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "cancelled"
	}
	return http.StatusInternalServerError, "internal"
}

func writeError(w http.ResponseWriter, err error) {
	status, code := classify(err)
	writeErr(w, status, code, err.Error())
}

// process looks up the {name} of a route: a valid name of the config, or
// an error (a name with "/" or ".." never reaches the engine).
func (s *Server) process(r *http.Request) (*config.Process, error) {
	name := r.PathValue("name")
	if !config.ValidProcessName(name) {
		return nil, &badRequest{fmt.Sprintf("%q is not a process name", name)}
	}
	return s.e.Config().Lookup(name)
}

// readBody decodes an optional JSON body (at most 1 MiB) into v; a field
// the route does not take is an error (a typo must not pass unnoticed).
func readBody(r *http.Request, v any) error { return decodeBody(r, v, true) }

func decodeBody(r *http.Request, v any, strict bool) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return &badRequest{"cannot read the body: " + err.Error()}
	}
	if len(data) > 1<<20 {
		return &badRequest{"the body is larger than 1 MiB"}
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return &badRequest{"the body is not the JSON this route takes: " + err.Error()}
	}
	return nil
}

func (s *Server) static(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := files.ReadFile(name)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		w.Header().Set("Content-Type", ctype)
		if strings.HasPrefix(ctype, "text/html") {
			w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
		}
		_, _ = w.Write(data)
	}
}
