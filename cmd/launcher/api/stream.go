package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/engine"
)

// sse writes one client's Server-Sent Events. Every write has a deadline,
// so a client that stops reading costs a goroutine for at most that long.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

const writeTimeout = 10 * time.Second

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// A stream that ends (a dropped client, a server stopping) closes its
	// connection: the client sees the end and reconnects.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w)}
}

// send writes an event (id 0: none, so a client's resume point stays
// where the numbered stream left it).
func (s *sse) send(id uint64, data []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	var b strings.Builder
	if id > 0 {
		fmt.Fprintf(&b, "id: %d\n", id)
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	_, err := s.w.Write([]byte(b.String()))
	return err
}

func (s *sse) comment(text string) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := fmt.Fprintf(s.w, ": %s\n\n", text)
	return err
}

func (s *sse) flush() error { return s.rc.Flush() }

// events is GET /api/v1/events: every event of the engine (operations of
// this server, and what the monitor sees: other launchers' runs, exits,
// restarts, machines lost and back) as `data: JSON` with an id.
// Last-Event-ID (header or ?last_event_id=) resumes after that event while
// it is still kept (else a {"event": "gap"} says to reload); ?replay=1
// starts with every kept event; ?output=a,b adds the output lines of
// those processes (without ids), from their last ?lines=N lines (default:
// new lines only).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	last := parseID(r.Header.Get("Last-Event-ID"))
	if last == 0 {
		last = parseID(q.Get("last_event_id"))
	}
	var outNames []string
	outLines, err := lineCount(q.Get("lines"), 0)
	if err != nil {
		writeError(w, err)
		return
	}
	if o := q.Get("output"); o != "" {
		for _, n := range strings.Split(o, ",") {
			if _, err := s.e.Config().Lookup(n); err != nil {
				writeError(w, err)
				return
			}
			outNames = append(outNames, n)
		}
	}
	c, backlog, gap := s.hub.subscribe(last, q.Get("replay") == "1")
	defer s.hub.unsubscribe(c)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Output lines have a queue of their own, made only for a client that
	// asked for them (1000 dashboards cost what their connections do).
	var out chan []byte
	if len(outNames) > 0 {
		out = make(chan []byte, 256)
		go func() {
			_ = s.e.Watch(ctx, outNames, outLines, func(l engine.LogLine) {
				if l.Err != nil {
					return
				}
				data, _ := json.Marshal(engine.Event{Time: time.Now(), Kind: engine.Output, Process: l.Process, Line: l.Line})
				if !offer(ctx, out, data) {
					c.drop() // too slow for its own output: it reconnects
				}
			})
		}()
	}
	st := newSSE(w)
	// A dropped client may be stuck in a write to a full socket: end that
	// write now rather than at its deadline. The response is not touched
	// after the handler returns.
	var mu sync.Mutex
	returned := false
	stopWatch := context.AfterFunc(c.gone, func() {
		mu.Lock()
		defer mu.Unlock()
		if !returned {
			_ = st.rc.SetWriteDeadline(time.Now())
		}
	})
	defer func() {
		cancel()
		stopWatch()
		mu.Lock()
		returned = true
		mu.Unlock()
	}()
	if err := st.comment("launcher events"); err != nil {
		return
	}
	if gap {
		if st.send(0, []byte(`{"event":"gap","message":"events were missed: reload the process list"}`)) != nil {
			return
		}
	}
	for _, f := range backlog {
		if st.send(f.id, f.data) != nil {
			return
		}
	}
	if st.flush() != nil {
		return
	}
	s.pump(ctx, st, c.ch, out, c.gone.Done())
}

// logStream is GET /api/v1/processes/{name}/log/stream: the last ?lines=N
// lines of the log (default 100), then each new line, as `data:
// {"process", "line"}` events; the stream says `{"error"}` when the log
// cannot be read for a while (the machine is away) and goes on.
func (s *Server) logStream(w http.ResponseWriter, r *http.Request) {
	p, n, ok := s.logRequest(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	lines := make(chan []byte, 1024)
	go func() {
		defer close(lines)
		_ = s.e.Watch(ctx, []string{p.Name}, n, func(l engine.LogLine) {
			v := map[string]string{"process": l.Process, "line": l.Line}
			if l.Err != nil {
				v = map[string]string{"process": l.Process, "error": l.Err.Error()}
			}
			data, _ := json.Marshal(v)
			if !offer(ctx, lines, data) {
				cancel() // a reader that cannot keep up is dropped
			}
		})
	}()
	st := newSSE(w)
	if st.comment("log of "+p.Name) != nil || st.flush() != nil {
		return
	}
	s.pump(ctx, st, nil, lines, nil)
}

// pump writes a client's stream until it ends: numbered frames of the
// event stream, unnumbered data (output, log lines: a closed channel ends
// the stream), a comment every 15 s so proxies keep the connection. What
// is queued goes out before one flush. It returns when the client is
// dropped or gone, or the server stops.
func (s *Server) pump(ctx context.Context, st *sse, frames <-chan frame, data <-chan []byte, dropped <-chan struct{}) {
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		var err error
		select {
		case f := <-frames:
			err = st.send(f.id, f.data)
		case d, ok := <-data:
			if !ok {
				return
			}
			err = st.send(0, d)
		case <-ping.C:
			err = st.comment("ping")
		case <-dropped:
			return
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		}
		for more := err == nil; more && err == nil; {
			// A dropped client gets nothing more, however much is queued
			// (a reader that came back would otherwise be fed the whole
			// backlog before the drop is seen).
			select {
			case <-dropped:
				return
			default:
			}
			select {
			case f := <-frames:
				err = st.send(f.id, f.data)
			case d, ok := <-data:
				if !ok {
					_ = st.flush()
					return
				}
				err = st.send(0, d)
			default:
				more = false
			}
		}
		if err == nil {
			err = st.flush()
		}
		if err != nil {
			return
		}
	}
}

// slowest is how long a stream's queue may stay full before its client is
// dropped: a burst (the history asked for) is waited out, a client that
// stopped reading is not.
const slowest = 2 * time.Second

// offer queues data, waiting at most slowest while the queue is full; it
// reports false when the client did not make room in time.
func offer(ctx context.Context, q chan<- []byte, data []byte) bool {
	select {
	case q <- data:
		return true
	default:
	}
	t := time.NewTimer(slowest)
	defer t.Stop()
	select {
	case q <- data:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
