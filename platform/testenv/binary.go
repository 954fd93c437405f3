package testenv

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/highgopress/highgopress/platform/server"
)

// Binaries builds a set of commands (import paths of main packages of the
// workspace) once per test binary, on first use, into one temporary
// directory; Remove deletes it (call it from TestMain after m.Run).
type Binaries struct {
	pkgs []string
	once sync.Once
	dir  string
	err  error
	out  string
}

// NewBinaries returns the (not yet built) commands pkgs.
func NewBinaries(pkgs ...string) *Binaries { return &Binaries{pkgs: pkgs} }

// Path builds every command on first use (one `go build`, bounded to 10
// minutes) and returns the path of the one named name (the last element of
// its import path). A build failure fails the test.
func (b *Binaries) Path(t testing.TB, name string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "hgp-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + "/"}, b.pkgs...)...)
		out, err := cmd.CombinedOutput()
		b.err, b.out = err, string(out)
		t.Logf("built %d commands in %s", len(b.pkgs), time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(b.pkgs, " "), b.err, b.out)
	}
	for _, p := range b.pkgs {
		if path.Base(p) == name {
			return filepath.Join(b.dir, name)
		}
	}
	t.Fatalf("no command %q among %v", name, b.pkgs)
	return ""
}

// Remove deletes the built commands.
func (b *Binaries) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// Process is a service binary running on loopback: exactly its given
// environment (plus PATH and HOME, nothing from the developer's shell),
// its output collected, stopped (SIGTERM, then SIGKILL) when the test
// ends, and the tail of its output logged when the test failed.
type Process struct {
	// Name names it in logs and failures.
	Name string
	// Addr is the address its gRPC health service answers on.
	Addr string
	// Logs is everything it wrote, across restarts.
	Logs *SyncBuffer

	bin  string
	env  []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess runs bin with env and waits (60 s at most) until its health
// check on addr answers SERVING.
func StartProcess(t testing.TB, name, bin, addr string, env map[string]string) *Process {
	t.Helper()
	p := &Process{Name: name, Addr: addr, Logs: &SyncBuffer{}, bin: bin,
		env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", name, Tail(p.Logs.String(), 40))
		}
	})
	p.Start(t)
	return p
}

// Start starts the process (again, after Kill9 or Stop) with the same
// command and environment and waits until it serves.
func (p *Process) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, p.Logs, p.Logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	hc := grpchealth.NewClient(server.NewH2CClient(), "http://"+p.Addr)
	Eventually(t, 60*time.Second, p.Name+" serving on "+p.Addr, func() bool {
		select {
		case <-done:
			t.Fatalf("%s exited during start-up:\n%s", p.Name, Tail(p.Logs.String(), 40))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		return err == nil && res.Status == grpchealth.StatusServing
	})
}

func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Pid is the running process's id.
func (p *Process) Pid() int {
	cmd, _ := p.current()
	return cmd.Process.Pid
}

// Kill9 kills the process with SIGKILL and waits until it is gone.
func (p *Process) Kill9() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop ends the process gracefully (SIGTERM; SIGKILL after 20 s); it does
// nothing when the process already ended.
func (p *Process) Stop() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.Kill9()
	}
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
