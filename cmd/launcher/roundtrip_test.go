package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// linkWork is the work of issue 14's table on machine m: twenty independent
// processes up, a chain of five (each with ready_check "true"), and 25
// processes to stop.
type linkWork struct{ independent, chain, stop string }

func linkConfigs(m string) linkWork {
	var ind, chain, stop strings.Builder
	ind.WriteString("context: {session: ind}\n")
	var names []string
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&ind, "p%d: {cmd: 'exec sleep 300', machine: '%s'}\n", i, m)
		names = append(names, fmt.Sprintf("p%d", i))
	}
	fmt.Fprintf(&ind, "all: {cmd: 'true', persistent: false, depends: [%s]}\n", strings.Join(names, ", "))
	chain.WriteString("context: {session: chain}\n")
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&chain, "c%d: {cmd: 'exec sleep 300', machine: '%s', ready_check: 'true'", i, m)
		if i > 0 {
			fmt.Fprintf(&chain, ", depends: [c%d]", i-1)
		}
		chain.WriteString("}\n")
	}
	stop.WriteString("context: {session: stop25}\n")
	names = nil
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&stop, "p%d: {cmd: 'exec sleep 300', machine: '%s'}\n", i, m)
		names = append(names, fmt.Sprintf("p%d", i))
	}
	fmt.Fprintf(&stop, "all: {cmd: 'true', persistent: false, depends: [%s]}\n", strings.Join(names, ", "))
	return linkWork{ind.String(), chain.String(), stop.String()}
}

// remoteCommands counts the commands machine m received in a LAUNCHER_TRACE
// output (each costs a round trip when run alone), and those that are not
// window listings (how many listings a wait polls depends on the load).
func remoteCommands(trace, m string) (all, acts int) {
	for _, l := range strings.Split(trace, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "trace connect ") {
			continue // how the connection was made, not a command
		}
		if strings.HasPrefix(strings.TrimSpace(l), "trace ") && strings.Contains(l, " "+m+" ") {
			all++
			if !strings.Contains(l, " list-windows ") {
				acts++
			}
		}
	}
	return all, acts
}

// TestRemoteRoundTrips counts the commands an SSH machine receives (not
// wall time): on a robot's 50 ms link each one alone is a round trip. A
// link of a chain used to cost seven (env file, spawn, check, mark, three
// listings), each on a channel of its own; now a spawn carries its env
// file, a ready mark carries the listing its dependants look at, and a
// resident shell answers each in one round trip. Stops ask "has it begun?"
// for all at once, or take the answer from the listing.
func TestRemoteRoundTrips(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	m := w.hosts[0].Machine()
	w.extra = append(w.extra, "LAUNCHER_TRACE=1")
	c := linkConfigs(m)
	count := func(args ...string) int {
		all, _ := remoteCommands(w.mustRun(args...).stderr, m)
		return all
	}
	acts := func(args ...string) int {
		_, n := remoteCommands(w.mustRun(args...).stderr, m)
		return n
	}
	w.writeConfig(c.chain)
	chain := count("run", "c4")
	w.mustRun("kill", "--all")
	chainAgain := count("run", "c4") // the state directory is known now
	status := count("status")
	w.mustRun("kill", "--all")
	w.writeConfig(c.independent)
	ind := count("run", "all")
	w.mustRun("kill", "--all")
	w.writeConfig(c.stop)
	w.mustRun("run", "all")
	stop := acts("kill", "--all")
	t.Logf("commands: chain of 5 %d (again %d), status %d, 20 independent %d, stop of 25 %d besides listings", chain, chainAgain, status, ind, stop)
	// Before: 40 for the chain (7 a link), 28 for 20 up, 37 for the stop
	// (25 besides listings: one look per process at its env file). The
	// chain's links follow one another: its count does not depend on the
	// load; the others' batches do, so their bounds leave room.
	for _, c := range []struct {
		what     string
		got, max int
	}{
		{"a chain of 5", chain, 5*3 + 12}, {"a chain of 5 again", chainAgain, 5*3 + 12},
		{"status", status, 2}, {"20 independent up", ind, 30}, {"a stop of 25", stop, 20},
	} {
		if c.got > c.max {
			t.Errorf("%s sent %d commands to the machine, want at most %d", c.what, c.got, c.max)
		}
	}
}

// BenchmarkLinkRoundTrips is issue 14's table: each piece of work through
// a TCP proxy that delays each direction by 25 ms (a 50 ms round trip)
// minus the same work direct, reported as "link-ms" and round trips
// ("RTT"; goals: 20 up ≤ 12, chain of 5 ≤ 24, status ≤ 9, stop of 25 ≤ 12).
func BenchmarkLinkRoundTrips(b *testing.B) {
	const oneWay = 25 * time.Millisecond
	w := newSSHWorld(b, []string{"127.0.0.2"}, executortest.SSHDOptions{})
	p, slow := w.proxied(w.hosts[0])
	p.Delay(oneWay)
	fast := w.hosts[0].Machine()
	type work struct {
		name string
		run  func(m string) time.Duration
	}
	timed := func(args ...string) time.Duration {
		t0 := time.Now()
		w.mustRun(args...)
		return time.Since(t0)
	}
	works := []work{
		{"20-up", func(m string) time.Duration {
			w.writeConfig(linkConfigs(m).independent)
			d := timed("run", "all")
			w.mustRun("kill", "--all")
			return d
		}},
		{"chain-5", func(m string) time.Duration {
			w.writeConfig(linkConfigs(m).chain)
			d := timed("run", "c4")
			w.mustRun("kill", "--all")
			return d
		}},
		{"status", func(m string) time.Duration {
			w.writeConfig(linkConfigs(m).chain)
			w.mustRun("run", "c4")
			d := timed("status")
			w.mustRun("kill", "--all")
			return d
		}},
		{"status-first-connection", func(m string) time.Duration {
			// A command with no kept connection to use: the connection
			// (TCP, key exchange, authentication) is part of its cost.
			w.writeConfig(linkConfigs(m).chain)
			w.mustRun("run", "c4")
			w.extra = append(w.extra, "LAUNCHER_SSH_PERSIST=0")
			d := timed("status")
			w.extra = w.extra[:len(w.extra)-1]
			w.mustRun("kill", "--all")
			return d
		}},
		{"stop-25", func(m string) time.Duration {
			w.writeConfig(linkConfigs(m).stop)
			w.mustRun("run", "all")
			return timed("kill", "--all")
		}},
	}
	// The first command to each machine starts the helper that keeps its
	// connection; the rows measure the commands that follow, as an
	// operator's are (but status-first-connection).
	for _, m := range []string{fast, slow} {
		w.writeConfig(linkConfigs(m).chain)
		w.mustRun("status")
	}
	w.waitHelper(2)
	for _, wk := range works {
		b.Run(wk.name, func(b *testing.B) {
			var direct, link time.Duration
			for i := 0; i < b.N; i++ {
				direct += wk.run(fast)
				link += wk.run(slow)
			}
			added := (link - direct) / time.Duration(b.N)
			b.ReportMetric(float64(added.Milliseconds()), "link-ms")
			b.ReportMetric(float64(added)/float64(2*oneWay), "RTT")
		})
	}
}
