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
func (h *Host) CallRoute(ctx context.Context, r *Route, req RouteRequest) (any, error) {
	type result struct {
		v   any
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
			done <- result{v: v, err: cerr}
		})
	}); err != nil {
		return nil, err
	}
	select {
	case res := <-done:
		return res.v, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.ctx.Done():
		return nil, h.ctx.Err()
	}
}
