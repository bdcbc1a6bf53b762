package binding

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// Route is an HTTP route a plugin added with launcher.route for `launcher
// serve`: its function gets the request as a table and returns a table,
// sent as JSON.
type Route struct {
	Method string
	Path   string
	Where  string
	fn     *lua.LFunction
}

// RouteRequest is what a route's function gets: {method=, path=,
// query={k=v}, body=decoded JSON or nil}.
type RouteRequest struct {
	Method string
	Path   string
	Query  map[string]string
	Body   any
}

// RouteAnswer is what a route's function returned: the body (JSON
// values), and from its optional second value {status=, headers={}} the
// status (0: 200) and extra headers.
type RouteAnswer struct {
	Body    any
	Status  int
	Headers map[string]string
}

// headerName is a header name's alphabet; its length (at most 64) is
// checked apart (a counted repetition is compiled as that many copies).
var headerName = regexp.MustCompile(`^[A-Za-z0-9-]+$`)

// routeMeta reads a route's second return value.
func routeMeta(v lua.LValue, a *RouteAnswer) error {
	t, ok := v.(*lua.LTable)
	if !ok {
		if v == lua.LNil {
			return nil
		}
		return fmt.Errorf("its second value must be {status=, headers=}, not a %s", v.Type())
	}
	var err error
	t.ForEach(func(k, val lua.LValue) {
		switch k.String() {
		case "status":
			n, ok := val.(lua.LNumber)
			if !ok || n < 100 || n > 599 || float64(n) != float64(int(n)) {
				err = fmt.Errorf("status must be an HTTP status (100-599), not %s", val.String())
				return
			}
			a.Status = int(n)
		case "headers":
			ht, ok := val.(*lua.LTable)
			if !ok {
				err = fmt.Errorf("headers must be a table of name = value")
				return
			}
			a.Headers = map[string]string{}
			ht.ForEach(func(hk, hv lua.LValue) {
				name := hk.String()
				switch {
				case len(name) > 64 || !headerName.MatchString(name) || strings.ContainsAny(hv.String(), "\r\n"):
					err = fmt.Errorf("header %q is not a header name and value", name)
				case strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding") || strings.EqualFold(name, "Content-Type"):
					err = fmt.Errorf("header %s is the server's (the body is JSON)", name)
				default:
					a.Headers[name] = hv.String()
				}
			})
		default:
			err = fmt.Errorf("unknown key %q in its second value (status, headers)", k.String())
		}
	})
	return err
}

// ReservedRoutePrefixes are the paths launcher's own server owns; a plugin
// route may not take them.
var ReservedRoutePrefixes = []string{"/api/", "/process/", "/static/"}

var routePathRe = regexp.MustCompile(`^(/[A-Za-z0-9_.~-]+)+$`)

// route(method, path, fn) adds an HTTP route to `launcher serve`.
func (h *Host) route(L *lua.LState) int {
	method := strings.ToUpper(host.Str(L, 1))
	path := host.Str(L, 2)
	fn := host.Func(L, 3)
	switch method {
	case "GET", "POST", "PUT", "DELETE":
	default:
		host.ArgError(L, 1, "a method is GET, POST, PUT or DELETE")
	}
	if !routePathRe.MatchString(path) || strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") || strings.Contains(path, "/./") {
		host.ArgError(L, 2, "a path is /segment[/segment…] of letters, digits, _ . ~ -")
	}
	for _, p := range ReservedRoutePrefixes {
		if strings.HasPrefix(path+"/", p) {
			host.Raise(L, "launcher.route: %s belongs to launcher's own API; choose another path", path)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.routes {
		if r.Method == method && r.Path == path {
			host.Raise(L, "launcher.route: %s %s is already defined at %s", method, path, r.Where)
		}
	}
	h.routes = append(h.routes, &Route{Method: method, Path: path, Where: where(L), fn: fn})
	return 0
}

// Routes are the routes plugins added, in the order they were added.
func (h *Host) Routes() []*Route {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Route(nil), h.routes...)
}

// CallRoute runs a route's function as a task and returns its first result
// as Go values (a table becomes a map or a slice). A Lua error is an error
// with the traceback; ctx ending stops waiting for it.
func (h *Host) CallRoute(ctx context.Context, r *Route, req RouteRequest) (RouteAnswer, error) {
	type result struct {
		v   RouteAnswer
		err error
	}
	done := make(chan result, 1)
	if err := h.Do(func() {
		L := h.rt.L
		t := L.NewTable()
		t.RawSetString("method", lua.LString(req.Method))
		t.RawSetString("path", lua.LString(req.Path))
		q := L.NewTable()
		for k, v := range req.Query {
			q.RawSetString(k, lua.LString(v))
		}
		t.RawSetString("query", q)
		if req.Body != nil {
			t.RawSetString("body", host.ToLua(L, req.Body))
		}
		h.rt.Spawn("route "+r.Method+" "+r.Path+" ("+r.Where+")", r.fn, []lua.LValue{t}, func(ret []lua.LValue, err error) {
			if err != nil {
				done <- result{err: err}
				return
			}
			if len(ret) == 0 {
				done <- result{}
				return
			}
			v, cerr := host.FromLua(ret[0])
			if cerr != nil {
				cerr = fmt.Errorf("route %s %s returned a value JSON cannot hold: %w", r.Method, r.Path, cerr)
			}
			a := RouteAnswer{Body: v}
			if cerr == nil && len(ret) > 1 {
				if merr := routeMeta(ret[1], &a); merr != nil {
					cerr = fmt.Errorf("route %s %s (%s): %w", r.Method, r.Path, r.Where, merr)
				}
			}
			done <- result{v: a, err: cerr}
		})
	}); err != nil {
		return RouteAnswer{}, err
	}
	select {
	case res := <-done:
		return res.v, res.err
	case <-ctx.Done():
		return RouteAnswer{}, ctx.Err()
	case <-h.ctx.Done():
		return RouteAnswer{}, h.ctx.Err()
	}
}
