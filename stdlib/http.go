package stdlib

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// http: get(url [, {headers=, timeout=}]) and post(url, body [, {headers=,
// timeout=}]) -> {status=, body=, headers=} | nil, err. A table body is
// sent as JSON. Both wait (default timeout 10 s) and end on Ctrl-C.
func httpLoader(rt *host.Runtime) lua.LGFunction {
	return func(L *lua.LState) int {
		m := L.NewTable()
		m.RawSetString("get", host.AsyncFunc(L, func(L *lua.LState) int {
			url := host.Str(L, 1)
			o := host.CheckOptions(L, 2, "headers", "timeout")
			L.Push(rt.Async(L, request(L, "GET", url, nil, "", o)))
			return 1
		}, "http.get"))
		m.RawSetString("post", host.AsyncFunc(L, func(L *lua.LState) int {
			url := host.Str(L, 1)
			var body []byte
			ctype := "text/plain; charset=utf-8"
			switch b := L.Get(2).(type) {
			case lua.LString:
				body = []byte(b)
			case *lua.LTable:
				v, err := host.FromLua(b)
				if err != nil {
					host.ArgError(L, 2, err.Error())
				}
				body, _ = json.Marshal(sorted(v))
				ctype = "application/json"
			case *lua.LNilType:
			default:
				host.ArgError(L, 2, "body must be a string or a table")
			}
			o := host.CheckOptions(L, 3, "headers", "timeout")
			L.Push(rt.Async(L, request(L, "POST", url, body, ctype, o)))
			return 1
		}, "http.post"))
		L.Push(m)
		return 1
	}
}

// request reads the options on the owner and returns the work to run.
func request(L *lua.LState, method, url string, body []byte, ctype string, o *lua.LTable) func(context.Context) host.Converter {
	timeout := host.OptDuration(L, o, "timeout")
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	headers := map[string]string{}
	if h, ok := o.RawGetString("headers").(*lua.LTable); ok {
		h.ForEach(func(k, v lua.LValue) { headers[k.String()] = v.String() })
	}
	return func(ctx context.Context) host.Converter {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return host.Fail(err.Error())
		}
		if ctype != "" && body != nil {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return host.Fail(host.Waiter(ctx, err))
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return host.Fail(err.Error())
		}
		hdr := map[string]string{}
		for k := range resp.Header {
			hdr[k] = resp.Header.Get(k)
		}
		return host.Values(map[string]any{"status": resp.StatusCode, "body": string(data), "headers": hdr})
	}
}
