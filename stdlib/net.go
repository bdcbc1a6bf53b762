package stdlib

import (
	"context"
	"net"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

// net: tcp_open(host, port [, timeout]) -> true | nil, err: whether a TCP
// connection to host:port can be opened (it is closed again at once).
func netLoader(rt *host.Runtime) lua.LGFunction {
	return func(L *lua.LState) int {
		m := L.NewTable()
		m.RawSetString("tcp_open", host.AsyncFunc(L, func(L *lua.LState) int {
			h := host.Str(L, 1)
			port := int(host.Num(L, 2))
			timeout := time.Duration(float64(L.OptNumber(3, 2)) * float64(time.Second))
			addr := net.JoinHostPort(h, strconv.Itoa(port))
			L.Push(rt.Async(L, func(ctx context.Context) host.Converter {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return host.Fail(host.Waiter(ctx, err))
				}
				c.Close()
				return host.Values(true)
			}))
			return 1
		}, "net.tcp_open"))
		L.Push(m)
		return 1
	}
}
