package testenv

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pollInterval is how often Eventually checks its condition.
const pollInterval = 5 * time.Millisecond

// ClosedAddr returns a loopback address nothing listens on (a port that was
// free a moment ago): where a client meets "connection refused".
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// Eventually polls cond (every pollInterval) until it holds and returns
// how long that took; the test fails with what when cond still does not
// hold after within. Tests synchronise through it rather than sleeping.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(pollInterval)
	}
	return time.Since(start)
}

// EventuallyNoError is Eventually for a check that says why it is not met
// yet: the last error is in the failure message.
func EventuallyNoError(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	ok := func() bool { last = check(); return last == nil }
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %s waiting for %s: %v", within, what, last)
		}
		time.Sleep(pollInterval)
	}
}

// TCPProxy forwards connections to a target until closed: a way to make a
// shared server unreachable for one client without stopping it.
type TCPProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

// NewTCPProxy listens on addr ("127.0.0.1:0" for any port) and forwards to
// target until Close or the end of the test.
func NewTCPProxy(t testing.TB, addr, target string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listen %s: %v", addr, err)
	}
	p := &TCPProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's listen address.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

func (p *TCPProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// Close stops accepting and cuts every open connection.
func (p *TCPProxy) Close() {
	p.ln.Close()
	p.wg.Wait()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}
