package streamstest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a Redis node, for cutting one client
// off the server while others keep their connections. Point the client at
// [Proxy.Addr] instead of the server.
//
//   - [Proxy.Cut] is a link taken down: open connections stay open but no
//     byte crosses in either direction, so the client sees its commands
//     time out rather than fail fast, and new connections are accepted but
//     go nowhere.
//   - [Proxy.Drop] is a server or middlebox that resets: open connections
//     are closed and new ones refused until healed.
//   - [Proxy.Heal] restores forwarding for connections made from then on;
//     connections that lived through a cut are closed, as a TCP connection
//     that lost bytes cannot be resumed.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	state proxyState
	conns map[*proxyConn]struct{}
	wg    sync.WaitGroup
}

type proxyState int

const (
	proxyOpen proxyState = iota
	proxyCut
	proxyDropped
)

// proxyConn is one client connection and its server connection.
type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed when the connection is closed
	// gate is closed while the connection may forward; a cut replaces it
	// with an open channel that forwarders wait on.
	mu   sync.Mutex
	gate chan struct{}
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}

// NewProxy starts a proxy on a random local port that forwards to target
// (host:port). It stops when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("streamstest: proxy: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is redis://Addr.
func (p *Proxy) URL() string { return "redis://" + p.Addr() }

// Cut stops all forwarding, as a link taken down does: nothing is closed,
// nothing gets through.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyCut
	for c := range p.conns {
		c.mu.Lock()
		select {
		case <-c.gate:
			c.gate = make(chan struct{})
		default:
		}
		c.mu.Unlock()
	}
}

// Drop closes every connection and refuses new ones.
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyDropped
	for c := range p.conns {
		c.close()
	}
}

// Heal forwards again. Connections that were cut are closed: the client
// notices, reconnects and gets through.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == proxyCut {
		for c := range p.conns {
			c.close()
		}
	}
	p.state = proxyOpen
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		state := p.state
		p.mu.Unlock()
		if state == proxyDropped {
			client.Close()
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server, gate: make(chan struct{}), done: make(chan struct{})}
		p.mu.Lock()
		if p.state == proxyOpen {
			close(c.gate)
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, server, client)
		go p.pipe(c, client, server)
	}
}

// pipe copies from src to dst while the connection's gate is open.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.mu.Lock()
			gate := c.gate
			c.mu.Unlock()
			select { // held here while cut
			case <-gate:
			case <-c.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the other direction ends with it
		}
	}
}
