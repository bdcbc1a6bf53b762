package api

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
)

// hub numbers the events of the server's stream, keeps the newest ones for
// clients that reconnect (Last-Event-ID), and hands each to every
// connected client through a bounded queue: a client too slow to keep up
// is dropped (it reconnects and resumes), never waited for.
type hub struct {
	mu sync.Mutex
	// first is the id of this server's first event: the server's start in
	// Unix microseconds, so ids grow across restarts and an id another run
	// issued is told apart (it would otherwise resume nothing, silently).
	first   uint64
	next    uint64
	ring    []frame // the newest events, oldest first
	keep    int
	clients map[*client]struct{}
	queue   int
}

// frame is one encoded event of the stream.
type frame struct {
	id   uint64
	data []byte
}

type client struct {
	ch chan frame
	// gone ends when the client is dropped (too slow) or unsubscribed: a
	// context, so that the stream can act on it with context.AfterFunc
	// instead of a goroutine per client waiting for it.
	gone context.Context
	drop context.CancelFunc
}

func newHub(keep, queue int, first uint64) *hub {
	return &hub{keep: keep, queue: queue, clients: map[*client]struct{}{}, first: first, next: first}
}

// publish numbers v, keeps it and queues it for every client.
func (h *hub) publish(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := frame{id: h.next, data: data}
	h.next++
	h.ring = append(h.ring, f)
	if len(h.ring) > 2*h.keep {
		// Copy down now and then instead of on every event (subscribe
		// looks at the last keep only).
		h.ring = append([]frame(nil), h.ring[len(h.ring)-h.keep:]...)
	}
	for c := range h.clients {
		select {
		case c.ch <- f:
		default:
			delete(h.clients, c)
			c.drop()
		}
	}
}

// subscribe registers a client and returns the kept events after lastID
// (all of them when lastID is 0 and replay is set); gap reports that
// events after lastID were no longer kept, or that lastID is not one of
// this server's.
func (h *hub) subscribe(lastID uint64, replay bool) (c *client, backlog []frame, gap bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c = &client{ch: make(chan frame, h.queue)}
	c.gone, c.drop = context.WithCancel(context.Background())
	h.clients[c] = struct{}{}
	ring := h.ring
	if len(ring) > h.keep {
		ring = ring[len(ring)-h.keep:]
	}
	if lastID == 0 && !replay {
		return c, nil, false
	}
	switch {
	case lastID+1 < h.first || lastID >= h.next:
		// An id this server never issued (an earlier run's, before a
		// restart): what happened meanwhile is unknown.
		gap = true
	case len(ring) > 0 && lastID+1 < ring[0].id:
		gap = true
	}
	for _, f := range ring {
		if f.id > lastID {
			backlog = append(backlog, f)
		}
	}
	return c, backlog, gap
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	c.drop()
}

// clientCount is the number of connected stream clients.
func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// parseID reads a Last-Event-ID.
func parseID(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
