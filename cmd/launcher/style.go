package main

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/executor/shell"
)

// style colours text when the output is a terminal (and NO_COLOR is unset).
type style struct {
	on     bool
	mu     sync.Mutex
	colour map[string]int
	used   map[int]bool
}

// Eight process colours, no yellows (reserved for states).
var palette = []int{31, 32, 34, 35, 36, 91, 94, 96}

func newStyle(on bool) *style { return &style{on: on, colour: map[string]int{}, used: map[int]bool{}} }

func (s *style) wrap(code string, text string) string {
	if !s.on || text == "" {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

// proc colours a process name: a stable colour from its CRC32, moving to
// the next free colour to avoid collisions.
func (s *style) proc(name string) string {
	if !s.on {
		return name
	}
	s.mu.Lock()
	c, ok := s.colour[name]
	if !ok {
		i := int(crc32.ChecksumIEEE([]byte(name)) % uint32(len(palette)))
		c = palette[i]
		for k := 0; k < len(palette); k++ {
			if cand := palette[(i+k)%len(palette)]; !s.used[cand] {
				c = cand
				break
			}
		}
		s.colour[name] = c
		s.used[c] = true
	}
	s.mu.Unlock()
	return s.wrap(fmt.Sprint(c), name)
}

func (s *style) state(st engine.State) string {
	code := map[engine.State]string{
		engine.StateReady: "1;92", engine.StateRunning: "92", engine.StateStarting: "33", engine.StateStopping: "93",
		engine.StateStopped: "2", engine.StateDead: "31", engine.StateRestarting: "1;33", engine.StateUnavailable: "1;91", engine.StateConflict: "1;95",
	}[st]
	if code == "" {
		code = "33"
	}
	return s.wrap(code, string(st))
}

// marker is the one-character status of an event (concert_launcher's).
func marker(ev engine.Event) string {
	switch ev.Kind {
	case engine.Failed:
		return "✗"
	case engine.Ready, engine.Stopped:
		return "✓"
	case engine.Exited:
		if ev.ExitCode != nil && *ev.ExitCode == 0 {
			return "✓"
		}
		return "✗"
	case engine.Waiting, engine.Checking, engine.Starting, engine.Stopping:
		return "…"
	}
	return "•"
}

func (s *style) marker(ev engine.Event) string {
	m := marker(ev)
	switch m {
	case "✗":
		return s.wrap("31", m)
	case "✓":
		return s.wrap("32", m)
	case "…":
		return s.wrap("33", m)
	}
	return m
}

func indent(level int) string {
	if level <= 0 {
		return ""
	}
	return strings.Repeat("  ", level) + "└─ "
}

func eventText(ev engine.Event) string {
	switch ev.Kind {
	case engine.Output:
		return "| " + ev.Line
	case engine.User:
		// A script's own event: its name and its data as JSON.
		if ev.Data == nil {
			return ev.Name
		}
		data, _ := json.Marshal(ev.Data)
		return ev.Name + " " + string(data)
	}
	return ev.Message
}

// progress prints an operation's events: one line per event, or, on a
// terminal, a live tree with one line per process that is redrawn as the
// states change (output lines and failures scroll above it).
type progress struct {
	w     io.Writer
	st    *style
	live  bool
	mu    sync.Mutex
	order []string
	rows  map[string]engine.Event
	drawn int
	last  time.Time
}

func newProgress(w io.Writer, st *style, live bool) *progress {
	return &progress{w: w, st: st, live: live, rows: map[string]engine.Event{}}
}

func (p *progress) line(ev engine.Event) string {
	if ev.Process == "" {
		return fmt.Sprintf("%s%2s %s", indent(ev.Level), p.st.marker(ev), eventText(ev))
	}
	return fmt.Sprintf("%s%2s [%s] %s", indent(ev.Level), p.st.marker(ev), p.st.proc(ev.Process), eventText(ev))
}

// event handles one event (called from the bus, one at a time).
func (p *progress) event(ev engine.Event) {
	if ev.Kind == engine.StateChanged || ev.Kind == engine.Connecting {
		// The watched view's changes: the events around them tell the same
		// (they printed as empty "• [proc] " lines). A dial that fails is
		// the step's failure, printed as such.
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.live {
		text := eventText(ev)
		first, rest, multi := strings.Cut(text, "\n")
		ev2 := ev
		ev2.Message, ev2.Line = first, first
		if ev.Kind == engine.Output {
			ev2.Line = ev.Line
			fmt.Fprintln(p.w, p.line(ev2))
			return
		}
		fmt.Fprintln(p.w, p.line(ev2))
		if multi {
			for _, l := range strings.Split(rest, "\n") {
				fmt.Fprintf(p.w, "%s     %s\n", strings.Repeat(" ", len([]rune(indent(ev.Level)))), l)
			}
		}
		return
	}
	if ev.Kind == engine.User {
		// A script's own event scrolls above the tree; it has no row.
		p.clear()
		fmt.Fprintln(p.w, p.line(ev))
		p.draw()
		return
	}
	if _, ok := p.rows[ev.Process]; !ok && ev.Process != "" {
		p.order = append(p.order, ev.Process)
	}
	permanent := ""
	switch {
	case ev.Kind == engine.Output:
		permanent = p.line(ev)
	case strings.Contains(ev.Message, "\n"):
		permanent = p.line(ev)
		first, _, _ := strings.Cut(ev.Message, "\n")
		ev.Message = first
	case ev.Kind == engine.Info && ev.Level == 0 && ev.Process == "":
		permanent = ev.Message
	}
	if ev.Kind != engine.Output {
		prev, ok := p.rows[ev.Process]
		// Keep the row's level from the first event (its place in the tree).
		if ok {
			ev.Level = prev.Level
		}
		p.rows[ev.Process] = ev
	}
	if permanent != "" {
		p.clear()
		fmt.Fprintln(p.w, permanent)
		p.draw()
		return
	}
	if time.Since(p.last) > 30*time.Millisecond {
		p.clear()
		p.draw()
	}
}

func (p *progress) clear() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.drawn)
		p.drawn = 0
	}
}

func (p *progress) draw() {
	var b strings.Builder
	for _, name := range p.order {
		b.WriteString(p.line(p.rows[name]))
		b.WriteString("\x1b[K\n")
	}
	fmt.Fprint(p.w, b.String())
	p.drawn = len(p.order)
	p.last = time.Now()
}

// finish draws the final state of the tree.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		p.clear()
		p.draw()
	}
}

// statusTable renders rows as the PROCESS SESSION MACHINE STATE PID EXIT
// [RESTARTS] table: left-aligned columns separated by two spaces, a dashed rule.
func statusTable(rows []engine.Status, st *style) string {
	header := []string{"PROCESS", "SESSION", "MACHINE", "STATE", "PID", "EXIT"}
	cells := make([][]string, len(rows))
	for i, r := range rows {
		pid, exit := "-", "-"
		if r.PID != nil {
			pid = fmt.Sprint(*r.PID)
		}
		if r.ExitCode != nil {
			exit = fmt.Sprint(*r.ExitCode)
		}
		cells[i] = []string{r.Process, r.Session, r.Machine, string(r.State), pid, exit}
	}
	// RESTARTS only when a restart policy restarted something: the table
	// stays concert_launcher's otherwise.
	for _, r := range rows {
		if r.Restarts > 0 {
			header = append(header, "RESTARTS")
			for i, r := range rows {
				cells[i] = append(cells[i], fmt.Sprint(r.Restarts))
			}
			break
		}
	}
	width := make([]int, len(header))
	for j, h := range header {
		width[j] = len(h)
		for _, c := range cells {
			width[j] = max(width[j], len([]rune(c[j])))
		}
	}
	var b strings.Builder
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }
	for j, h := range header {
		if j > 0 {
			b.WriteString("  ")
		}
		if j == len(header)-1 {
			b.WriteString(h)
		} else {
			b.WriteString(pad(h, width[j]))
		}
	}
	b.WriteString("\n")
	for j := range header {
		if j > 0 {
			b.WriteString("  ")
		}
		b.WriteString(strings.Repeat("-", width[j]))
	}
	b.WriteString("\n")
	for i, c := range cells {
		for j := range c {
			if j > 0 {
				b.WriteString("  ")
			}
			text := pad(c[j], width[j])
			if j == len(c)-1 {
				text = c[j]
			}
			switch j {
			case 0:
				text = st.proc(c[j]) + strings.Repeat(" ", width[j]-len([]rune(c[j])))
			case 3:
				text = st.state(rows[i].State) + strings.Repeat(" ", width[j]-len([]rune(c[j])))
			}
			b.WriteString(text)
		}
		b.WriteString("\n")
	}
	var notes []string
	for _, r := range rows {
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Process, r.Error))
		}
		if r.ConfigChanged {
			notes = append(notes, fmt.Sprintf("%s: runs a command the config no longer gives; `%s` applies it", r.Process, restartCommand(r)))
		}
	}
	sort.Strings(notes)
	for _, n := range notes {
		b.WriteString("  " + n + "\n")
	}
	return b.String()
}

// restartCommand is the command line that restarts r's run with the
// variants and params it was started with.
func restartCommand(r engine.Status) string {
	args := []string{"launcher", "restart", r.Process}
	for _, v := range r.Request.Variants {
		args = append(args, "-v", v)
	}
	keys := make([]string, 0, len(r.Request.Params))
	for k := range r.Request.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-p", k+":="+r.Request.Params[k])
	}
	return shell.Join(args)
}
