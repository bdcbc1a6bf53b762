package api

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// On loopback without a token, the server answers only its own user: any
// local account can connect to 127.0.0.1, and a start with params runs
// shell code as the server's user. Linux tells who owns the other end of a
// loopback TCP connection in /proc/net/tcp{,6}.

type peerKey struct{}

// peer is what ConnContext learnt of a connection's other end.
type peer struct {
	uid int
	err error
}

// ConnContext records, for http.Server.ConnContext, which user owns the
// client's end of a loopback connection (when the server checks it).
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if !s.o.Loopback {
		return ctx
	}
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return context.WithValue(ctx, peerKey{}, peer{uid: -1, err: errors.New("not a TCP connection")})
	}
	uid, err := peerUID(local, remote)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
}

// samePeer reports why a request may not be served (nil: it may): its
// connection comes from another user than the server's (root passes).
func samePeer(ctx context.Context) error {
	p, ok := ctx.Value(peerKey{}).(peer)
	if !ok {
		return nil // ConnContext was not installed (tests of the handler alone)
	}
	if p.err != nil {
		return fmt.Errorf("cannot tell which user connected (%w): use --token-file", p.err)
	}
	if me := os.Getuid(); p.uid != me && p.uid != 0 {
		return fmt.Errorf("this server answers its own user (uid %d) on loopback, not uid %d: use a token (--token-file) to share it", me, p.uid)
	}
	return nil
}

// peerUID finds the owner of the socket whose local address is remote and
// whose remote address is local: the client's end of our connection.
func peerUID(local, remote *net.TCPAddr) (int, error) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		v6 := strings.HasSuffix(f, "6")
		want, ok1 := procAddr(remote, v6)
		peerOf, ok2 := procAddr(local, v6)
		if !ok1 || !ok2 {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 8 || fields[1] != want || fields[2] != peerOf {
				continue
			}
			uid, err := strconv.Atoi(fields[7])
			fh.Close()
			if err != nil {
				return -1, fmt.Errorf("%s: bad uid %q", f, fields[7])
			}
			return uid, nil
		}
		fh.Close()
	}
	return -1, errors.New("the connection is not in /proc/net/tcp")
}

// procAddr writes an address as /proc/net/tcp{,6} does: the address's
// 32-bit words in the machine's byte order, in hex, then the port.
func procAddr(a *net.TCPAddr, v6 bool) (string, bool) {
	var b []byte
	if v6 {
		b = a.IP.To16()
	} else {
		b = a.IP.To4()
	}
	if b == nil {
		return "", false
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&sb, "%08X", binary.NativeEndian.Uint32(b[i:i+4]))
	}
	fmt.Fprintf(&sb, ":%04X", a.Port)
	return sb.String(), true
}
