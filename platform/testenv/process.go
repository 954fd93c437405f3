package testenv

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SyncBuffer collects the output of a process or a logger for a test to
// read while it is still written. It keeps at most its first 4 MiB.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 { // bounded
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RedisServer is a redis-server of one test alone, on a free loopback port
// and a temporary directory, so that the test can freeze (SIGSTOP), stop or
// kill it without disturbing the shared one.
type RedisServer struct {
	// Addr is host:port of the server.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedisServer starts a private redis-server (no persistence) and waits
// until it answers PING; it is killed when the test ends. The test command
// installs redis-server (scripts/mw.sh), so a missing one is a failure.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (bash scripts/mw.sh install redis): %v", err)
	}
	port := FreePort(t)
	r := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.Kill)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	Eventually(t, 10*time.Second, "private redis-server", func() bool { return rdb.Ping(context.Background()).Err() == nil })
	return r
}

// Signal sends sig to the server (SIGSTOP freezes it, SIGCONT resumes it).
func (r *RedisServer) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to redis-server: %v", sig, err)
	}
}

// Kill kills the server (resuming it first if it was frozen) and waits for
// it to exit. Calling it again does nothing.
func (r *RedisServer) Kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	<-r.done
}
