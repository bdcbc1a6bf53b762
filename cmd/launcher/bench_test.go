package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// The benchmarks of the SSH transport (make bench runs them). Each reports
// its measurement as a ratio against a floor measured in the same run.

func twentyYAML(session, machine string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "context: {session: %s}\n", session)
	var deps []string
	for i := 0; i < 20; i++ {
		m := ""
		if machine != "" {
			m = ", machine: " + machine
		}
		fmt.Fprintf(&b, "p%d: {cmd: sleep 600%s}\n", i, m)
		deps = append(deps, fmt.Sprintf("p%d", i))
	}
	fmt.Fprintf(&b, "all: {cmd: 'true', persistent: false, depends: [%s]}\n", strings.Join(deps, ", "))
	return b.String()
}

func timed(e *tenv, args ...string) time.Duration {
	start := time.Now()
	e.mustRun(args...)
	return time.Since(start)
}

func resetRemote(h *executortest.SSHD) {
	_ = exec.Command("su", executortest.TestUser, "-c", "TMUX_TMPDIR="+h.TmuxTmpDir+" tmux kill-server").Run()
}

// BenchmarkRemoteBringUp20: 20 processes on one SSH host against the same
// bring-up locally; counts the TCP connections of a bring-up.
func BenchmarkRemoteBringUp20(b *testing.B) {
	w := newSSHWorld(b, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	h := w.hosts[0]
	proxy, machine := w.proxied(h)
	var local, remote, connect time.Duration
	var conns int64
	for i := 0; i < b.N; i++ {
		w.writeConfig(twentyYAML("bl", ""))
		_, _ = w.tmux("kill-server")
		local += timed(w.tenv, "run", "all")
		resetRemote(h)
		w.writeConfig(twentyYAML("br", machine))
		before := proxy.Accepted()
		remote += timed(w.tenv, "run", "all")
		conns += proxy.Accepted() - before
		// One connection set-up: the cheapest remote command.
		w.writeConfig(fmt.Sprintf("context: {session: bc}\nq: {cmd: 'true', machine: %s}\n", machine))
		connect += timed(w.tenv, "status")
	}
	n := float64(b.N)
	floor := float64(local+connect) / n
	b.ReportMetric(float64(local.Milliseconds())/n, "local-ms")
	b.ReportMetric(float64(remote.Milliseconds())/n, "ssh-ms")
	b.ReportMetric(float64(connect.Milliseconds())/n, "connect-ms")
	b.ReportMetric(float64(remote)/n/floor, "ratio-vs-(local+connect)")
	b.ReportMetric(float64(conns)/n, "tcp-conns")
}

// BenchmarkRemoteStatus3x20: status of 3 hosts × 20 processes against the
// status of one host × 20.
func BenchmarkRemoteStatus3x20(b *testing.B) {
	w := newSSHWorld(b, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, executortest.SSHDOptions{})
	var all strings.Builder
	all.WriteString("context: {session: st}\n")
	for k, h := range w.hosts {
		for i := 0; i < 20; i++ {
			fmt.Fprintf(&all, "h%dp%d: {cmd: sleep 600, machine: %s}\n", k, i, h.Machine())
		}
	}
	var deps []string
	for k := range w.hosts {
		for i := 0; i < 20; i++ {
			deps = append(deps, fmt.Sprintf("h%dp%d", k, i))
		}
	}
	fmt.Fprintf(&all, "all: {cmd: 'true', persistent: false, depends: [%s]}\n", strings.Join(deps, ", "))
	w.writeConfig(all.String())
	w.mustRun("run", "all")
	threeCfg := w.cfg
	one := strings.Replace(threeCfg, "launcher.yaml", "one.yaml", 1)
	var oneYAML strings.Builder
	oneYAML.WriteString("context: {session: st}\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&oneYAML, "h0p%d: {cmd: sleep 600, machine: %s}\n", i, w.hosts[0].Machine())
	}
	if err := os.WriteFile(one, []byte(oneYAML.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	// The floor: OpenSSH's own client running `true` on one host, then on
	// the three at once. It shows what parallel connections cost on this
	// machine, where the three sshd share the client's cores.
	sshTrue := func(h *executortest.SSHD) {
		out, err := exec.Command("ssh", "-F", "/dev/null", "-i", w.key, "-o", "UserKnownHostsFile="+w.known,
			"-o", "BatchMode=yes", "-p", strconv.Itoa(h.Port), executortest.TestUser+"@"+h.Addr, "true").CombinedOutput()
		if err != nil {
			b.Fatalf("ssh %s: %v\n%s", h.Machine(), err, out)
		}
	}
	// Each status dials its machines itself (as the floor's ssh does):
	// the kept connections' figures are reported beside, as warm-*.
	w.waitHelper(3)
	var t3, t1, s3, s1, w3, w1 time.Duration
	for i := 0; i < b.N; i++ {
		w3 += timed(w.tenv, "status", "-c", threeCfg)
		w1 += timed(w.tenv, "status", "-c", one)
		w.extra = append(w.extra, "LAUNCHER_SSH_PERSIST=0")
		t3 += timed(w.tenv, "status", "-c", threeCfg)
		t1 += timed(w.tenv, "status", "-c", one)
		w.extra = w.extra[:len(w.extra)-1]
		start := time.Now()
		sshTrue(w.hosts[0])
		s1 += time.Since(start)
		start = time.Now()
		var wg sync.WaitGroup
		for _, h := range w.hosts {
			wg.Add(1)
			go func() { defer wg.Done(); sshTrue(h) }()
		}
		wg.Wait()
		s3 += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(t3.Milliseconds())/n, "3hosts-ms")
	b.ReportMetric(float64(t1.Milliseconds())/n, "1host-ms")
	b.ReportMetric(float64(t3)/float64(t1), "ratio")
	b.ReportMetric(float64(s1.Milliseconds())/n, "ssh-true-1host-ms")
	b.ReportMetric(float64(s3)/float64(s1), "ssh-true-3v1-ratio")
	b.ReportMetric(float64(t3)/float64(t1)/(float64(s3)/float64(s1)), "ratio-vs-ssh-floor")
	b.ReportMetric(float64(w3.Milliseconds())/n, "warm-3hosts-ms")
	b.ReportMetric(float64(w1.Milliseconds())/n, "warm-1host-ms")
}

// BenchmarkLinkDropDetection: how long after a link stalls a running
// launcher (watch) notices it.
func BenchmarkLinkDropDetection(b *testing.B) {
	w := newSSHWorld(b, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	proxy, machine := w.proxied(w.hosts[0])
	w.writeConfig(fmt.Sprintf("context: {session: ld}\nt: {cmd: 'while true; do echo tick; sleep 0.2; done', machine: %s}\n", machine))
	w.mustRun("run", "t")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		watch := w.start("watch", "t", "-n", "0")
		executortest.Eventually(b, "watch follows", func() bool { return strings.Contains(watch.stdout(), "tick") })
		proxy.Stall()
		start := time.Now()
		executortest.Eventually(b, "link loss reported", func() bool { return strings.Contains(watch.stderr(), "unavailable") })
		total += time.Since(start)
		_ = watch.cmd.Process.Kill()
		watch.wait(b)
		proxy.Resume()
		proxy.Drop()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "detect-ms")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N)/5000, "ratio-vs-5s")
}

// BenchmarkScriptEmpty: `launcher script` of an empty script against
// `launcher --version` (the floor: process start-up alone).
func BenchmarkScriptEmpty(b *testing.B) {
	e := newEnv(b, "context: {session: be}\na: {cmd: 'true'}\n")
	empty := e.dir + "/empty.lua"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	var script, version time.Duration
	for i := 0; i < b.N; i++ {
		script += timed(e, "script", empty)
		version += timed(e, "--version")
	}
	n := float64(b.N)
	b.ReportMetric(float64(script.Microseconds())/n/1000, "script-ms")
	b.ReportMetric(float64(version.Microseconds())/n/1000, "version-ms")
	b.ReportMetric(float64(script)/float64(version), "ratio")
}
