package tmux

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// concertPattern is taggedScript's test (grep -E) for a concert_launcher
// process: an argument that is its wrapper, or a `script`'s NAME.stdout.
// concertArg is the same test, without a regexp (a backtracking match per
// argument of every pane's process was a tenth of a local status).
const concertPattern = `(^|/)concert_launcher_wrapper\.bash$|/[^/]+\.stdout$`

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
	sock := socket
	if sock == "" {
		dir := os.Getenv("TMUX_TMPDIR")
		if dir == "" {
			dir = "/tmp"
		}
		sock = dir + "/tmux-" + strconv.Itoa(os.Geteuid()) + "/default"
	}
	// One pass over the processes: their environment, then their command
	// line (the script's order is kept: concert lines after all others).
	tmuxVar := []byte("TMUX=" + sock + ",")
	var out, concert bytes.Buffer
	envBuf, cmdBuf := make([]byte, 16<<10), make([]byte, 4<<10)
	found := false
	for _, p := range pids {
		env, ok := readProc("/proc/"+p+"/environ", &envBuf)
		if !ok {
			continue
		}
		if bytes.Contains(env, []byte("LAUNCHER_TAG=")) {
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
		// Only a process of this tmux server can be concert_launcher's
		// here: its command line is read (and matched) for those alone.
		if !bytes.HasPrefix(firstTMUX(env), tmuxVar) {
			continue
		}
		cmdline, ok := readProc("/proc/"+p+"/cmdline", &cmdBuf)
		if !ok || !concertArg(cmdline) {
			continue
		}
		concert.WriteString("concert:" + p + ":")
		concert.Write(bytes.ReplaceAll(cmdline, []byte{0}, []byte{0x1f}))
		concert.WriteByte(0)
		found = true
	}
	out.Write(concert.Bytes())
	if !found {
		return out.Bytes()
	}
	statBuf := make([]byte, 1<<10)
	for _, p := range pids {
		st, ok := readProc("/proc/"+p+"/stat", &statBuf)
		if !ok {
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

// readProc reads a /proc file into *buf (grown as needed; the result is
// valid until the next read into it) with plain system calls: os.ReadFile's
// stat and poller registration doubled the cost of a scan of every process.
func readProc(path string, buf *[]byte) ([]byte, bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(*buf) {
			*buf = append(*buf, make([]byte, len(*buf))...)
		}
		m, err := syscall.Read(fd, (*buf)[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		if m == 0 {
			return (*buf)[:n], true
		}
		n += m
	}
}

// concertArg reports whether one of a NUL-separated command line's
// arguments is concert_launcher's.
func concertArg(cmdline []byte) bool {
	const wrapper, stdout = "concert_launcher_wrapper.bash", ".stdout"
	for _, a := range bytes.Split(cmdline, []byte{0}) {
		base := a[bytes.LastIndexByte(a, '/')+1:]
		if string(base) == wrapper {
			return true
		}
		// /NAME.stdout: a slash, then at least one character before the suffix.
		if len(base) < len(a) && len(base) > len(stdout) && bytes.HasSuffix(base, []byte(stdout)) {
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
