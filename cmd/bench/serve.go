package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// serve is a `launcher serve` running in a world.
type serve struct {
	cmd  *exec.Cmd
	base string
}

func startServe(w *world, cfg string) *serve {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(*launcher, "-c", cfg, "serve", "--listen", addr)
	cmd.Env = w.env()
	cmd.Dir = w.dir
	must(cmd.Start())
	s := &serve{cmd: cmd, base: "http://" + addr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.base + "/api/v1/info")
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			must(fmt.Errorf("serve did not answer: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *serve) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func (s *serve) rssKiB() int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return kb
		}
	}
	return 0
}

// serveList50: the API's list of 50 processes against `status --json` of
// the same 50 (the CLI starts, loads the config, lists the windows).
func serveList50(w *world) row {
	cfg := w.writeConfig(independentYAML(50))
	w.reset()
	w.timed(*launcher, "-c", cfg, "run", "all")
	s := startServe(w, cfg)
	defer s.stop()
	var l, f []float64
	for i := 0; i < *reps*4; i++ {
		start := time.Now()
		resp, err := http.Get(s.base + "/api/v1/processes")
		must(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l = append(l, ms(time.Since(start)))
		d, _, _ := w.timed(*launcher, "-c", cfg, "status", "--json")
		f = append(f, ms(d))
	}
	r := row{name: "API list of 50 (serve)", launcherMs: median(l), floorMs: median(f), floorName: "launcher status --json, same 50", target: "≤ 0.5×"}
	r.ok = r.launcherMs <= 0.5*r.floorMs
	return r
}

// serveEvents: a CLI `run --json` reports a process ready at a time it
// prints; an SSE client of a running `serve` gets the change some time
// later (the server is told by tmux, not by the CLI). Also the server's
// RSS with 50 processes and 10 stream clients.
func serveEvents(w *world) row {
	var b strings.Builder
	b.WriteString(independentYAML(50))
	b.WriteString("r: {cmd: sleep 600, ready_check: \"true\"}\n")
	cfg := w.writeConfig(b.String())
	w.reset()
	w.timed(*launcher, "-c", cfg, "run", "all")
	s := startServe(w, cfg)
	defer s.stop()
	seen := make(chan time.Time, 100)
	for c := 0; c < 10; c++ {
		resp, err := http.Get(s.base + "/api/v1/events")
		must(err)
		defer resp.Body.Close()
		go func(first bool) {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "data: ") {
					continue
				}
				var ev struct {
					Event, Process, State string
				}
				if json.Unmarshal([]byte(line[6:]), &ev) == nil && first && ev.Process == "r" && ev.Event == "state" && ev.State == "READY" {
					seen <- time.Now()
				}
			}
		}(c == 0)
	}
	var lat []float64
	for i := 0; i < *reps; i++ {
		_, _, _ = w.timed(*launcher, "-c", cfg, "kill", "r")
		drain(seen)
		_, _, out := w.timed(*launcher, "-c", cfg, "run", "r", "--json")
		cliReady := readyTime(out, "r")
		select {
		case at := <-seen:
			lat = append(lat, ms(at.Sub(cliReady)))
		case <-time.After(5 * time.Second):
			must(fmt.Errorf("the stream did not report r READY"))
		}
	}
	rss := s.rssKiB()
	rssServe = row{name: "serve RSS, 50 processes, 10 stream clients", launcherMs: float64(rss) / 1024, floorName: "-", target: "< 40 MB", ok: rss < 40*1024}
	r := row{name: "event on SSE after the CLI's --json line", launcherMs: median(lat), floorName: "-", target: "≤ 50 ms"}
	r.ok = r.launcherMs <= 50
	return r
}

var rssServe row

func drain(c chan time.Time) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// serveClients: the server's RSS with 50 processes and 1000 event-stream
// clients connected (each has read the stream's opening comment), against
// the same server with none.
func serveClients(w *world) row {
	cfg := w.writeConfig(independentYAML(50))
	w.reset()
	w.timed(*launcher, "-c", cfg, "run", "all")
	s := startServe(w, cfg)
	defer s.stop()
	idle := s.rssKiB()
	const n = 1000
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}
	client := &http.Client{Transport: tr}
	var bodies []io.Closer
	var first *bufio.Reader
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for c := 0; c < n; c++ {
		resp, err := client.Get(s.base + "/api/v1/events")
		must(err)
		rd := bufio.NewReader(resp.Body)
		line, err := rd.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, ":") {
			must(fmt.Errorf("stream client %d: %q: %w", c, line, err))
		}
		if first == nil {
			first = rd
		}
		bodies = append(bodies, resp.Body)
	}
	// One event to every client, so each queue and writer was used.
	w.timed(*launcher, "-c", cfg, "kill", "p0")
	for {
		line, err := first.ReadString('\n')
		must(err)
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"p0"`) {
			break
		}
	}
	rss := s.rssKiB()
	return row{name: "serve RSS, 50 processes, 1000 stream clients", launcherMs: float64(rss) / 1024, floorMs: float64(idle) / 1024,
		floorName: "the same server with no client", target: "≤ 60 MB", ok: rss <= 60*1024}
}
