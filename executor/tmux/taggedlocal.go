package tmux

import (
	"bytes"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// concertCmdline is taggedScript's test for a concert_launcher process: an
// argument that is its wrapper, or a `script`'s NAME.stdout.
var concertCmdline = regexp.MustCompile(`(^|/)concert_launcher_wrapper\.bash$|/[^/]+\.stdout$`)

// launcherVars are the variables taggedScript reports.
var launcherVars = [][]byte{[]byte("LAUNCHER_TAG="), []byte("LAUNCHER_PROCESS="), []byte("LAUNCHER_SESSION="), []byte("LAUNCHER_LOG=")}

// taggedLocal is taggedScript's output for this computer, read from /proc
// here instead of by a shell and its greps: the scan was half of a local
// status (sh, two greps and their reads). socket is the script's $1. The
// processes come in the shell glob's order, as the script's do.
func taggedLocal(socket string) []byte {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		if n := e.Name(); n != "" && strings.Trim(n, "0123456789") == "" {
			pids = append(pids, n)
		}
	}
	sort.Strings(pids)
	var out bytes.Buffer
	for _, p := range pids {
		env, err := os.ReadFile("/proc/" + p + "/environ")
		if err != nil || !bytes.Contains(env, []byte("LAUNCHER_TAG=")) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			for _, v := range launcherVars {
				if bytes.HasPrefix(kv, v) {
					out.WriteString("/proc/" + p + "/environ:")
					out.Write(kv)
					out.WriteByte(0)
				}
			}
		}
	}
	sock := socket
	if sock == "" {
		dir := os.Getenv("TMUX_TMPDIR")
		if dir == "" {
			dir = "/tmp"
		}
		sock = dir + "/tmux-" + strconv.Itoa(os.Geteuid()) + "/default"
	}
	found := false
	for _, p := range pids {
		cmdline, err := os.ReadFile("/proc/" + p + "/cmdline")
		if err != nil || !concertArg(cmdline) {
			continue
		}
		env, _ := os.ReadFile("/proc/" + p + "/environ")
		if !bytes.HasPrefix(firstTMUX(env), []byte("TMUX="+sock+",")) {
			continue
		}
		out.WriteString("concert:" + p + ":")
		out.Write(bytes.ReplaceAll(cmdline, []byte{0}, []byte{0x1f}))
		out.WriteByte(0)
		found = true
	}
	if !found {
		return out.Bytes()
	}
	for _, p := range pids {
		st, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		line, _, _ := bytes.Cut(st, []byte("\n"))
		if i := bytes.LastIndex(line, []byte(") ")); i >= 0 {
			line = line[i+2:]
		}
		f := strings.Fields(string(line))
		if len(f) >= 2 && f[0] != "Z" {
			out.WriteString("ppid:" + p + ":" + f[1])
			out.WriteByte(0)
		}
	}
	return out.Bytes()
}

// concertArg reports whether one of a NUL-separated command line's
// arguments is concert_launcher's.
func concertArg(cmdline []byte) bool {
	for _, a := range bytes.Split(cmdline, []byte{0}) {
		if concertCmdline.Match(a) {
			return true
		}
	}
	return false
}

// firstTMUX is the first TMUX= entry of a NUL-separated environment.
func firstTMUX(env []byte) []byte {
	for _, kv := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(kv, []byte("TMUX=")) {
			return kv
		}
	}
	return nil
}
