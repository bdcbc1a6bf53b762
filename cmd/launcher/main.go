// Command launcher brings up and keeps an eye on the processes of a robot (or
// any multi-machine stack) described by a concert_launcher-compatible YAML
// config: each process in its own tmux window, on this computer, on a remote
// machine over SSH or inside a Docker container, started in dependency order
// and gated on readiness. It is the composition root: it parses flags, loads
// the config, and wires executors, engine and Lua host together.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
