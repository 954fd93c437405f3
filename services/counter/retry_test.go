package counter_test

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// replyCutter is a TCP proxy to Redis on loopback. Once armed, it forwards
// the next EVALSHA to Redis and then cuts the connection instead of
// relaying the reply: the script ran, but the client never hears of it
// (a network failure at the worst moment).
type replyCutter struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
}

func newReplyCutter(t *testing.T, target string) *replyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyCutter{ln: ln, target: target}
	t.Cleanup(p.close)
	go p.serve()
	return p
}

func (p *replyCutter) addr() string { return p.ln.Addr().String() }

func (p *replyCutter) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *replyCutter) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *replyCutter) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.track(client)
		p.track(server)
		go p.pipe(client, server)
	}
}

func (p *replyCutter) pipe(client, server net.Conn) {
	var cut atomic.Bool
	go func() { // Redis → client, unless this connection is being cut
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && cut.Load() {
				p.cuts.Add(1)
				_ = client.Close()
				_ = server.Close()
				return
			}
			if n > 0 {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if bytes.Contains(buf[:n], []byte("evalsha")) && p.armed.CompareAndSwap(true, false) {
				cut.Store(true) // before Redis can answer
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = server.Close()
			return
		}
	}
}

// TestLostReplyIsNotRetried: when the connection breaks after Redis ran a
// write's script but before its reply arrived, the write fails with
// Unavailable (Build's client does not retry: a retry would re-run the
// script as a no-op and report changed=false for a write that did change).
// The write was applied exactly once, and retrying it is safe.
func TestLostReplyIsNotRetried(t *testing.T) {
	for _, batching := range []string{"on", "off"} {
		t.Run("batching="+batching, func(t *testing.T) {
			rdb := realRedis(t)
			proxy := newReplyCutter(t, testenv.RedisAddr(t))
			comp, err := counter.Build(bg, logging.Discard(), configFor(t,
				"HGP_REDIS_ADDR", proxy.addr(), "HGP_COUNTER_BATCHING", batching, "HGP_COUNTER_CACHE_TTL", "0"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = comp.Close() })
			url, client := rpctest.Serve(t, comp.Server.Handler())
			e := &env{url: url, http: client, signer: newSigner(t), rdb: rdb}
			cs := e.counters(rpctest.Protocols[1])
			item := ref("articles", "cut")
			it := domain.ItemRef{Namespace: "articles", ID: "cut"}

			proxy.armed.Store(true)
			_, err = cs.Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: item}))
			wantCode(t, "Like whose reply was lost", err, connect.CodeUnavailable, "retry later")
			if proxy.cuts.Load() != 1 {
				t.Fatalf("%d replies cut; want 1", proxy.cuts.Load())
			}
			state := func() string {
				likes, _ := rdb.HGet(bg, redisstore.CountsKey(it), "likes").Result()
				member, _ := rdb.SIsMember(bg, redisstore.LikersKey(it), "u1").Result()
				return fmt.Sprintf("likes=%s liked=%v outbox=%d", likes, member, e.outboxLen(t))
			}
			if got := state(); got != "likes=1 liked=true outbox=1" {
				t.Fatalf("after the lost reply: %s; want the like applied once", got)
			}
			// The client's retry is harmless: a no-op that says so.
			res, err := cs.Like(bg, as(e, "u1", &counterv1.LikeRequest{Item: item}))
			if err != nil || res.Msg.Changed || res.Msg.Count != 1 {
				t.Fatalf("retried Like = %v, %v; want changed=false count=1", res, err)
			}
			if got := state(); got != "likes=1 liked=true outbox=1" {
				t.Fatalf("after the retry: %s; want unchanged", got)
			}
		})
	}
}
