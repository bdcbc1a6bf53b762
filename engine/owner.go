package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Owner identifies the launcher process that runs an operation. It is
// written into a window's @launcher_op mark while a start or stop is under
// way, so other launchers can tell a live operation from one whose launcher
// died (which must not leave stale STARTING/STOPPING states).
type Owner struct {
	Host  string
	PID   int
	Start string // the process start time from /proc, against PID reuse
}

// heartbeatTTL is how long a mark from another computer stays live without
// being refreshed; owners refresh every heartbeatEvery.
const (
	heartbeatTTL   = 30 * time.Second
	heartbeatEvery = 10 * time.Second
)

// Self returns the Owner of the running process.
func Self() Owner {
	h, _ := os.Hostname()
	return Owner{Host: h, PID: os.Getpid(), Start: procStart(os.Getpid())}
}

func procStart(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "0"
	}
	s := string(data)
	if i := strings.LastIndex(s, ") "); i >= 0 {
		f := strings.Fields(s[i+2:])
		if len(f) > 19 {
			return f[19] // field 22: starttime
		}
	}
	return "0"
}

// mark returns the @launcher_op value for an operation of kind ("starting"
// or "stopping") at time now.
func (o Owner) mark(kind string, now time.Time) string {
	return fmt.Sprintf("%s %s %d %s %d", kind, o.Host, o.PID, o.Start, now.Unix())
}

// opMark is a parsed @launcher_op value.
type opMark struct {
	Kind  string
	Owner Owner
	Beat  time.Time
}

func parseOp(s string) (opMark, bool) {
	f := strings.Fields(s)
	if len(f) != 5 {
		return opMark{}, false
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil {
		return opMark{}, false
	}
	beat, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil {
		return opMark{}, false
	}
	return opMark{Kind: f[0], Owner: Owner{Host: f[1], PID: pid, Start: f[3]}, Beat: time.Unix(beat, 0)}, true
}

// live reports whether the operation that wrote the mark may still run: on
// this computer its process must exist (same start time); elsewhere its
// heartbeat must be recent.
func (m opMark) live(self Owner, now time.Time) bool {
	if m.Owner.Host == self.Host {
		if m.Owner.PID == self.PID && m.Owner.Start == self.Start {
			return true
		}
		return procStart(m.Owner.PID) == m.Owner.Start && m.Owner.Start != "0"
	}
	return now.Sub(m.Beat) < heartbeatTTL
}
