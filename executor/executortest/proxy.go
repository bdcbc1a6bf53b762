package executortest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on loopback between a client and a server that can
// stall (hold every byte, like a cable pulled without a reset) or drop
// (close every connection) to simulate link loss.
type Proxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	conns    map[net.Conn]bool
	stalled  bool
	resume   chan struct{}
	refusing bool
	delay    time.Duration
	accepted atomic.Int64
}

// NewProxy listens on addr (e.g. "127.0.0.1:0") and forwards to target.
func NewProxy(t testing.TB, addr, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}, resume: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Drop()
	})
	return p
}

// Addr is where clients connect.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Accepted counts the connections accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		refuse, stalled, resume := p.refusing, p.stalled, p.resume
		p.conns[c] = true
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go func() {
			if stalled {
				<-resume // a new connection hangs while the link is down
			}
			s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns[s] = true
			p.mu.Unlock()
			go p.pipe(c, s)
			go p.pipe(s, c)
		}()
	}
}

// chunk is bytes read from one side and when they may reach the other.
type chunk struct {
	b   []byte
	due time.Time
}

func (p *Proxy) pipe(dst, src net.Conn) {
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	if delay > 0 {
		p.delayedPipe(dst, src, delay)
		return
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			stalled, resume := p.stalled, p.resume
			p.mu.Unlock()
			if stalled {
				<-resume // hold the bytes until the link comes back
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.closePair(dst, src)
}

func (p *Proxy) closePair(dst, src net.Conn) {
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// delayedPipe forwards every chunk delay after it was read, in order,
// without limiting throughput: a link with a long round trip, not a slow one.
func (p *Proxy) delayedPipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 4096)
	gone := make(chan struct{})
	defer close(gone)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- chunk{b: buf[:n], due: time.Now().Add(delay)}:
				case <-gone:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d) // the link's latency itself, not a wait for a condition
		}
		p.mu.Lock()
		stalled, resume := p.stalled, p.resume
		p.mu.Unlock()
		if stalled {
			<-resume
		}
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	p.closePair(dst, src)
}

// Delay makes every byte of connections accepted from now on reach the
// other side d later, in each direction (a round trip of 2d).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Stall holds all traffic (connections stay open) until Resume.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume lets held and new traffic through again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// Drop closes every open connection (new ones are accepted).
func (p *Proxy) Drop() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Refuse makes the proxy close new connections at once (true) or not.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = on
}
