package stdlib

import (
	"fmt"
	"net"
	"testing"
)

func TestTCPOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln2.Close()
	open := ln2.Addr().(*net.TCPAddr).Port
	got := runLua(t, fmt.Sprintf(`local net = require("net")
local a = net.tcp_open("127.0.0.1", %d, 1)
local b, err = net.tcp_open("127.0.0.1", %d, 1)
return tostring(a), tostring(b), tostring(err ~= nil)`, open, port))
	if got[0] != "true" || got[1] != "nil" || got[2] != "true" {
		t.Errorf("%q", got)
	}
}
