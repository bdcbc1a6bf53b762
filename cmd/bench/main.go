// Command bench measures launcher against floors measured in the same run:
// raw shell scripts doing the same tmux work, so the ratios mean something
// on any machine. `make bench` runs it; see README, "Performance".
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	launcher = flag.String("launcher", "bin/launcher", "launcher binary to measure")
	reps     = flag.Int("reps", 5, "repetitions per measurement (the median is reported)")
	only     = flag.String("only", "", "run only the scenarios whose name contains this")
)

// world is a private tmux server, home and state directory.
type world struct {
	dir, sock, home, state string
}

func newWorld() *world {
	dir, err := os.MkdirTemp("", "lb")
	must(err)
	w := &world{dir: dir, sock: filepath.Join(dir, "s"), home: filepath.Join(dir, "home"), state: filepath.Join(dir, "state")}
	must(os.MkdirAll(w.home, 0o700))
	return w
}

func (w *world) env() []string {
	return []string{"HOME=" + w.home, "PATH=" + os.Getenv("PATH"), "LAUNCHER_STATE_DIR=" + w.state,
		"LAUNCHER_TMUX_SOCKET=" + w.sock, "LAUNCHER_TMUX_CONFIG=/dev/null", "TERM=dumb", "TMUX_SOCK=" + w.sock, "LAUNCHER_TRACE=" + os.Getenv("LAUNCHER_TRACE")}
}

// reset kills the tmux server and waits until its socket is gone (a new
// server on a socket whose old server is still exiting fails at random).
func (w *world) reset() {
	_ = exec.Command("tmux", "-S", w.sock, "kill-server").Run()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := exec.Command("tmux", "-S", w.sock, "list-sessions").Run(); err != nil {
			if _, err := os.Stat(w.sock); err != nil || time.Now().After(deadline.Add(-4*time.Second)) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = os.Remove(w.sock)
}

func (w *world) close() { w.reset(); os.RemoveAll(w.dir) }

// timed runs argv in w and returns its wall time and peak RSS (KiB).
func (w *world) timed(argv ...string) (time.Duration, int64, string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = w.env()
	cmd.Dir = w.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: %v\n%s", strings.Join(argv, " "), err, out.String())
		os.Exit(1)
	}
	rss := int64(0)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
	}
	return d, rss, out.String()
}

func (w *world) sh(script string) time.Duration {
	d, _, _ := w.timed("bash", "-c", script)
	return d
}

func (w *world) writeConfig(yaml string) string {
	p := filepath.Join(w.dir, "launcher.yaml")
	must(os.WriteFile(p, []byte(yaml), 0o644))
	return p
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func median(ds []float64) float64 {
	sort.Float64s(ds)
	return ds[len(ds)/2]
}

type row struct {
	name       string
	launcherMs float64
	floorMs    float64
	floorName  string
	target     string
	ok         bool
	note       string
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func independentYAML(n int) string {
	var b strings.Builder
	b.WriteString("context: {session: bench}\n")
	var deps []string
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "p%d: {cmd: sleep 600}\n", i)
		deps = append(deps, fmt.Sprintf("p%d", i))
	}
	fmt.Fprintf(&b, "all: {cmd: \"true\", persistent: false, depends: [%s]}\n", strings.Join(deps, ", "))
	return b.String()
}

// floor50 creates 50 windows, one tmux call each, running what launcher runs
// for a process (the "raw tmux, 1 call per window").
const floor50 = "N=50\n" + floorUpN

// floor50same does the work launcher does for each process (interactive
// bash, remain-on-exit, output piped to a timestamping log writer), one tmux
// call per window, without launcher's bookkeeping (marks, readiness). The
// writer is the one launcher installed (a missing one fails the bench: the
// floor ran a bare perl reading its program from the pane until 2026-12-06).
const floor50same = `T="tmux -u -S $TMUX_SOCK -f /dev/null"; W=$(ls -t $LAUNCHER_STATE_DIR/bin/logwriter.pl-* | head -n 1)
[ -n "$W" ] || { echo "no log writer in $LAUNCHER_STATE_DIR/bin" >&2; exit 1; }; mkdir -p $LAUNCHER_STATE_DIR/floor
$T new-session -d -s bench -n p0 bash -ic 'sleep 600' \; set-option -w remain-on-exit on \; pipe-pane "exec perl $W >> $LAUNCHER_STATE_DIR/floor/p0.log"
for i in $(seq 1 49); do $T new-window -d -t bench: -n p$i bash -ic 'sleep 600' \; set-option -w -t bench:p$i remain-on-exit on \; pipe-pane -t bench:p$i "exec perl $W >> $LAUNCHER_STATE_DIR/floor/p$i.log"; done`

// floor50pipe is the raw floor with each window's output piped to a bare
// `cat` into a file: what a log pipe per window costs before any log
// writer's own work (the pipe's fork in the server, its sh, its process).
const floor50pipe = `T="tmux -S $TMUX_SOCK -f /dev/null"; mkdir -p $LAUNCHER_STATE_DIR/floor
$T new-session -d -s bench -n p0 'sleep 600' \; pipe-pane "exec cat >> $LAUNCHER_STATE_DIR/floor/p0.log"
for i in $(seq 1 49); do $T new-window -d -t bench: -n p$i 'sleep 600' \; pipe-pane -t bench:p$i "exec cat >> $LAUNCHER_STATE_DIR/floor/p$i.log"; done`

const floor50one = `args=(new-session -d -s bench -n p0 'sleep 600')
for i in $(seq 1 49); do args+=(';' new-window -d -t bench -n p$i 'sleep 600'); done
tmux -S $TMUX_SOCK -f /dev/null "${args[@]}"`

func up50(w *world) row {
	cfg := w.writeConfig(independentYAML(50))
	var l, f, f1, fs, fp []float64
	var peak int64
	for i := 0; i < *reps; i++ {
		w.reset()
		d, rss, _ := w.timed(*launcher, "-c", cfg, "run", "all")
		l = append(l, ms(d))
		peak = max(peak, rss)
		w.reset()
		f = append(f, ms(w.sh(floor50)))
		w.reset()
		f1 = append(f1, ms(w.sh(floor50one)))
		w.reset()
		fs = append(fs, ms(w.sh(floor50same)))
		w.reset()
		fp = append(fp, ms(w.sh(floor50pipe)))
	}
	r := row{name: "50 independent processes up", launcherMs: median(l), floorMs: median(f), floorName: "raw tmux, 1 call per window",
		target: "≤ 1.2×", note: fmt.Sprintf("other floors: 1 call total %.0f ms; same work as launcher (bash -ic, log writer), 1 call per window %.0f ms (ratio %.2f×);\n"+
			"raw with a log pipe per window to a bare cat %.0f ms (%.2f× raw: the pipe alone, before any writer's work)",
			median(f1), median(fs), median(l)/median(fs), median(fp), median(fp)/median(f))}
	r.ok = r.launcherMs <= 1.2*r.floorMs
	tmuxinatorRow = row{}
	if tx, err := exec.LookPath("tmuxinator"); err == nil {
		// The tool many robot teams use for this: its project of the same
		// 50 windows (it types each command into the window's shell).
		project := filepath.Join(w.dir, "tmuxinator.yml")
		var b strings.Builder
		fmt.Fprintf(&b, "name: bench\nroot: %s\nsocket_path: %s\ntmux_options: -f /dev/null\nwindows:\n", w.dir, w.sock)
		for i := 0; i < 50; i++ {
			fmt.Fprintf(&b, "  - p%d: sleep 600\n", i)
		}
		must(os.WriteFile(project, []byte(b.String()), 0o644))
		var tl, ll []float64
		for i := 0; i < *reps; i++ {
			w.reset()
			d, _, _ := w.timed(*launcher, "-c", cfg, "run", "all")
			ll = append(ll, ms(d))
			w.reset()
			d, _, _ = w.timed(tx, "start", "-p", project, "--no-attach")
			tl = append(tl, ms(d))
		}
		tmuxinatorRow = row{name: "50 up, against tmuxinator", launcherMs: median(ll), floorMs: median(tl),
			floorName: "tmuxinator start --no-attach of the same 50 windows", target: "≤ 0.5×", ok: median(ll) <= 0.5*median(tl)}
	}
	rssRow = row{name: "launcher peak RSS (50 up)", launcherMs: float64(peak) / 1024, floorName: "-", target: "< 30 MB", ok: peak < 30*1024}
	return r
}

var rssRow row

// tmuxinatorRow is up50's comparison with tmuxinator (when it is installed).
var tmuxinatorRow row

func chain10(w *world) row {
	var b strings.Builder
	b.WriteString("context: {session: bench}\n")
	for i := 0; i < 10; i++ {
		dep := ""
		if i > 0 {
			dep = fmt.Sprintf(", depends: [c%d]", i-1)
		}
		fmt.Fprintf(&b, "c%d: {cmd: sleep 600, ready_check: \"true\"%s}\n", i, dep)
	}
	cfg := w.writeConfig(b.String())
	floor := `T="tmux -S $TMUX_SOCK -f /dev/null"
$T new-session -d -s bench -n c0 'sleep 600'; bash -c true
for i in $(seq 1 9); do $T new-window -d -t bench -n c$i 'sleep 600'; bash -c true; done`
	var l, f []float64
	for i := 0; i < *reps; i++ {
		w.reset()
		d, _, _ := w.timed(*launcher, "-c", cfg, "run", "c9")
		l = append(l, ms(d))
		w.reset()
		f = append(f, ms(w.sh(floor)))
	}
	r := row{name: "chain of 10, ready_check: true", launcherMs: median(l), floorMs: median(f), floorName: "new-window + check, in order", target: "≤ 5×"}
	r.ok = r.launcherMs <= 5*r.floorMs
	return r
}

func status50(w *world) row {
	cfg := w.writeConfig(independentYAML(50))
	w.reset()
	w.timed(*launcher, "-c", cfg, "run", "all")
	var l, f []float64
	for i := 0; i < *reps*2; i++ {
		d, _, _ := w.timed(*launcher, "-c", cfg, "status")
		l = append(l, ms(d))
		f = append(f, ms(w.sh(`tmux -S $TMUX_SOCK list-windows -a -F '#{window_name} #{pane_pid} #{pane_dead} #{pane_dead_status}' >/dev/null`)))
	}
	r := row{name: "status of 50", launcherMs: median(l), floorMs: median(f), floorName: "one list-windows", target: "≤ 3×"}
	r.ok = r.launcherMs <= 3*r.floorMs
	return r
}

func stop50(w *world) row {
	cfg := w.writeConfig(independentYAML(50))
	floorSetup := `T="tmux -S $TMUX_SOCK -f /dev/null"
$T new-session -d -s bench -n p0 'sleep 600'; $T set-option -t bench remain-on-exit on
for i in $(seq 1 49); do $T new-window -d -t bench -n p$i 'sleep 600'; done`
	floor := `T="tmux -S $TMUX_SOCK -f /dev/null"
for i in $(seq 0 49); do $T send-keys -t bench:p$i C-c; done
while $T list-windows -t bench -F '#{pane_dead}' | grep -q 0; do :; done`
	var l, f []float64
	for i := 0; i < *reps; i++ {
		w.reset()
		w.timed(*launcher, "-c", cfg, "run", "all")
		d, _, _ := w.timed(*launcher, "-c", cfg, "kill", "--all")
		l = append(l, ms(d))
		w.reset()
		w.sh(floorSetup)
		f = append(f, ms(w.sh(floor)))
	}
	r := row{name: "stop 50 gracefully", launcherMs: median(l), floorMs: median(f), floorName: "C-c all, wait", target: "≤ 3×"}
	r.ok = r.launcherMs <= 3*r.floorMs
	return r
}

// scale compares the cost per process of a bring-up, a status and a stop
// of 1000 independent processes with the same at 50 (issue 14: ≤ 1.3×).
// One run at 1000 (it takes tens of seconds), the median of the runs at 50.
func scale(w *world) row {
	perProcess := func(n, reps int) (up, st, stop float64) {
		cfg := w.writeConfig(independentYAML(n))
		var us, ss, ks []float64
		for i := 0; i < reps; i++ {
			w.reset()
			d, _, _ := w.timed(*launcher, "-c", cfg, "run", "all")
			us = append(us, ms(d)/float64(n))
			d, _, _ = w.timed(*launcher, "-c", cfg, "status")
			ss = append(ss, ms(d)/float64(n))
			d, _, _ = w.timed(*launcher, "-c", cfg, "kill", "--all")
			ks = append(ks, ms(d)/float64(n))
		}
		return median(us), median(ss), median(ks)
	}
	u50, s50, k50 := perProcess(50, *reps)
	u1k, s1k, k1k := perProcess(1000, 1)
	// tmux itself, in the same run: one call per window, and a C-c per
	// window until all are gone (every call costs the server a walk over
	// all its windows, so its own cost per window grows with their number).
	rawPerWindow := func(n, reps int) (up, stop float64) {
		var us, ks []float64
		for i := 0; i < reps; i++ {
			w.reset()
			us = append(us, ms(w.sh(fmt.Sprintf("N=%d\n%s", n, floorUpN)))/float64(n))
			w.reset()
			w.sh(fmt.Sprintf("N=%d\n%s", n, floorManyN))
			ks = append(ks, ms(w.sh(floorStopAll))/float64(n))
		}
		return median(us), median(ks)
	}
	ru50, rk50 := rawPerWindow(50, *reps)
	ru1k, rk1k := rawPerWindow(1000, 1)
	worst := max(u1k/u50, s1k/s50, k1k/k50)
	return row{name: "1000 up, status, stop: per process vs at 50", launcherMs: worst, floorName: "ratio of per-process costs",
		target: "≤ 1.3×", ok: worst <= 1.3,
		note: fmt.Sprintf("per process at 50 / at 1000: up %.1f / %.1f ms (%.2f×), status %.2f / %.2f ms (%.2f×), stop %.1f / %.1f ms (%.2f×)\n"+
			"raw tmux per window at 50 / at 1000, same run: new-window %.1f / %.1f ms (%.2f×), C-c until gone %.1f / %.1f ms (%.2f×)",
			u50, u1k, u1k/u50, s50, s1k, s1k/s50, k50, k1k, k1k/k50, ru50, ru1k, ru1k/ru50, rk50, rk1k, rk1k/rk50)}
}

// floorUpN creates $N windows, one tmux call each.
const floorUpN = `T="tmux -S $TMUX_SOCK -f /dev/null"
$T new-session -d -s bench -n p0 'sleep 600'
for i in $(seq 1 $((N - 1))); do $T new-window -d -t bench: -n p$i 'sleep 600'; done`

// floorManyN creates $N windows in a few calls (not measured), and a
// session that keeps the server once they are gone.
const floorManyN = `T="tmux -S $TMUX_SOCK -f /dev/null"
$T new-session -d -s keep 'sleep 600'
$T new-session -d -s bench -n p0 'sleep 600'
args=()
for i in $(seq 1 $((N - 1))); do
  [ ${#args[@]} -eq 0 ] || args+=(';')
  args+=(new-window -d -t bench: -n p$i 'sleep 600')
  if [ ${#args[@]} -ge 600 ]; then $T "${args[@]}" || exit 1; args=(); fi
done
[ ${#args[@]} -eq 0 ] || $T "${args[@]}"`

// floorStopAll sends C-c to each window of session bench, one call each,
// and polls until they are all gone.
const floorStopAll = `T="tmux -S $TMUX_SOCK -f /dev/null"
for wi in $($T list-windows -t bench -F '#{window_id}'); do $T send-keys -t "$wi" C-c; done
while $T has-session -t bench 2>/dev/null; do sleep 0.01; done`

// readyLatency: the process becomes ready at a time it records; launcher
// reports the ready event (run --json) some time later.
func readyLatency(w *world) row {
	flagFile := filepath.Join(w.dir, "ready.flag")
	cfg := w.writeConfig(fmt.Sprintf(`context: {session: bench}
r:
  cmd: sleep 0.4; date +%%s.%%N > %s.tmp; mv %s.tmp %s; sleep 600
  ready_check: test -e %s
`, flagFile, flagFile, flagFile, flagFile))
	floor := fmt.Sprintf(`rm -f %[1]s; (sleep 0.4; date +%%s.%%N > %[1]s.tmp; mv %[1]s.tmp %[1]s) &
until bash -c 'test -e %[1]s'; do :; done; date +%%s.%%N > %[1]s.seen; wait`, flagFile)
	var l, f []float64
	for i := 0; i < *reps; i++ {
		w.reset()
		_ = os.Remove(flagFile)
		_, _, out := w.timed(*launcher, "-c", cfg, "run", "r", "--json")
		l = append(l, ms(readyTime(out, "r").Sub(readFloatTime(flagFile))))
		w.sh(floor)
		f = append(f, ms(readFloatTime(flagFile+".seen").Sub(readFloatTime(flagFile))))
	}
	r := row{name: "ready noticed after the process became ready", launcherMs: median(l), floorMs: median(f), floorName: "loop running the check", target: "≤ 50 ms"}
	r.ok = r.launcherMs <= 50
	return r
}

// readyTime is the time of the last `ready` event of process in the
// output of `run --json`.
func readyTime(out, process string) time.Time {
	var at time.Time
	for _, line := range strings.Split(out, "\n") {
		var ev struct {
			Time    time.Time `json:"time"`
			Event   string    `json:"event"`
			Process string    `json:"process"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "ready" && ev.Process == process {
			at = ev.Time
		}
	}
	return at
}

func readFloatTime(path string) time.Time {
	data, err := os.ReadFile(path)
	must(err)
	s := strings.TrimSpace(string(data))
	sec, frac, _ := strings.Cut(s, ".")
	si, _ := strconv.ParseInt(sec, 10, 64)
	ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	return time.Unix(si, ns)
}

func main() {
	flag.Parse()
	if _, err := os.Stat(*launcher); err != nil {
		must(fmt.Errorf("%s not found: run make build first", *launcher))
	}
	abs, err := filepath.Abs(*launcher)
	must(err)
	*launcher = abs
	w := newWorld()
	defer w.close()
	scenarios := []struct {
		name string
		fn   func(*world) row
	}{{"up50", up50}, {"chain10", chain10}, {"status50", status50}, {"stop50", stop50}, {"ready", readyLatency},
		{"serve-list", serveList50}, {"serve-events", serveEvents}, {"serve-clients", serveClients}, {"scale", scale}}
	var rows []row
	for _, s := range scenarios {
		if *only != "" && !strings.Contains(s.name, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "measuring %s…\n", s.name)
		rows = append(rows, s.fn(w))
		if s.name == "up50" {
			rows = append(rows, rssRow)
			if tmuxinatorRow.name != "" {
				rows = append(rows, tmuxinatorRow)
			}
		}
		if s.name == "serve-events" {
			rows = append(rows, rssServe)
		}
	}
	fmt.Printf("%-46s %12s %12s %8s %-8s %s\n", "work (median of runs)", "launcher", "floor", "ratio", "target", "floor is")
	failed := 0
	for _, r := range rows {
		ratio := "-"
		if r.floorMs > 0 {
			ratio = fmt.Sprintf("%.2f×", r.launcherMs/r.floorMs)
		}
		unit := "ms"
		if strings.Contains(r.name, "RSS") {
			unit = "MB"
		}
		if strings.Contains(r.name, "per process vs") {
			unit = "× " // the worst of the three ratios
		}
		mark := "ok"
		if !r.ok {
			mark = "MISSED"
			failed++
		}
		fmt.Printf("%-46s %9.1f %s %9.1f %s %8s %-8s %s [%s]\n", r.name, r.launcherMs, unit, r.floorMs, unit, ratio, r.target, r.floorName, mark)
		if r.note != "" {
			for _, l := range strings.Split(r.note, "\n") {
				fmt.Printf("%-46s %s\n", "", l)
			}
		}
	}
	if failed > 0 {
		fmt.Printf("\n%d target(s) missed on this machine\n", failed)
	}
}
