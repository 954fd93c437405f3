package cluster

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

// redisDB is this package's Redis database (the counters' keys and their
// outbox stream); every test flushes it first, so the tests of this package
// run one after the other (no t.Parallel).
const redisDB = 6

// identitySecret is shared by the gateway and the counters; jwtSecret signs
// the users' tokens.
var (
	identitySecret = strings.Repeat("c", 32)
	jwtSecret      = strings.Repeat("j", 32)
)

// root is the checkout.
func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ------------------------------------------------------------ binaries

var builds struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// binary builds the gateway, devtoken, counter and consumer commands once
// per test run and returns the path of one.
func binary(t testing.TB, name string) string {
	t.Helper()
	builds.once.Do(func() {
		dir, err := os.MkdirTemp("", "hgp-cluster-bin-")
		if err != nil {
			builds.err = err
			return
		}
		builds.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/",
			"github.com/highgopress/highgopress/services/gateway/cmd/gateway",
			"github.com/highgopress/highgopress/services/gateway/cmd/devtoken",
			"github.com/highgopress/highgopress/services/counter/cmd/counter",
			"github.com/highgopress/highgopress/services/consumer/cmd/consumer")
		cmd.Dir = root(t)
		out, err := cmd.CombinedOutput()
		builds.err, builds.out = err, string(out)
		t.Logf("built gateway, devtoken, counter, consumer in %s", time.Since(start).Round(time.Millisecond))
	})
	if builds.err != nil {
		t.Fatalf("go build: %v\n%s", builds.err, builds.out)
	}
	return filepath.Join(builds.dir, name)
}

// cleanups run when the package's tests end (TestMain): the clusters
// shared by several tests and the built binaries.
var cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func atExit(f func()) {
	cleanups.mu.Lock()
	defer cleanups.mu.Unlock()
	cleanups.fns = append(cleanups.fns, f)
}

func TestMain(m *testing.M) {
	code := m.Run()
	cleanups.mu.Lock()
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
	cleanups.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// ----------------------------------------------------------- processes

// proc is a service process on loopback.
type proc struct {
	name string
	addr string // its service port
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.SyncBuffer
}

// startProc runs a service binary with exactly env (plus PATH and HOME)
// and waits until its gRPC health check answers SERVING on addr.
func startProc(t testing.TB, bin, name, addr string, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t, bin))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{name: name, addr: addr, cmd: cmd, done: make(chan struct{}), logs: &testenv.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", name, tail(p.logs.String(), 30))
		}
	})
	hc := grpchealth.NewClient(server.NewH2CClient(), "http://"+addr)
	testenv.Eventually(t, 60*time.Second, name+" serving on "+addr, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited during start-up:\n%s", name, tail(p.logs.String(), 40))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		return err == nil && res.Status == grpchealth.StatusServing
	})
	return p
}

// stop ends the process gracefully (SIGTERM; SIGKILL after 20 s).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill9()
	}
}

// kill9 kills the process with SIGKILL and waits until it is gone.
func (p *proc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// metric sums the values of every series of name (any labels) whose label
// text contains filter, from the Prometheus text at url.
func metric(url, name, filter string) (float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if filter != "" && !strings.Contains(line, filter) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", url, line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// poll calls check every `every` until it returns nil and returns how long
// that took; the test fails with the last error after within. (Checks that
// talk to a cluster are too heavy for testenv.Eventually's 5 ms.)
func poll(t testing.TB, within, every time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("timed out after %s waiting for %s: %v", within, what, err)
		}
		<-tick.C
	}
}

// ------------------------------------------------------------- clusters

// cluster is a kafka-cluster or consul-cluster of scripts/mw.sh in a state
// directory of its own (HGP_MW_RUN) on a base port of its own, so it never
// meets the shared single-node servers nor a cluster a developer runs.
type cluster struct {
	name   string // kafka-cluster or consul-cluster
	script string
	env    []string
	base   int
	run    string
}

// mwTimeout bounds every mw.sh call (three JVMs starting on a loaded
// machine, or a killed broker waiting for its old session to expire).
const mwTimeout = 4 * time.Minute

// mwScript is scripts/mw.sh: HGP_MW_SCRIPT (from .run/env), else the checkout's.
func mwScript(t testing.TB) string {
	if p := os.Getenv("HGP_MW_SCRIPT"); p != "" {
		return p
	}
	return filepath.Join(root(t), "scripts", "mw.sh")
}

// newCluster prepares (does not start) a private cluster: portVar is its
// base-port variable, ports(base) every TCP port it listens on and udp
// whether those need UDP too (serf).
func newCluster(t testing.TB, name, portVar string, ports func(base int) []int, udp bool) *cluster {
	t.Helper()
	run, err := os.MkdirTemp("", "hgp-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{name: name, script: mwScript(t), run: run, base: freeBase(t, ports, udp)}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HGP_MW_RUN" || strings.HasPrefix(k, "HGP_MW_") && strings.HasSuffix(k, "_PORT") {
			continue // never another instance's state dir or ports
		}
		c.env = append(c.env, kv)
	}
	c.env = append(c.env, "HGP_MW_RUN="+run, portVar+"="+strconv.Itoa(c.base))
	return c
}

// freeBase picks a base port in 20000-29900 (below the ephemeral range)
// whose ports are all free now.
func freeBase(t testing.TB, ports func(base int) []int, udp bool) int {
	t.Helper()
	for range 50 {
		base := 20000 + 100*rand.IntN(100)
		if allFree(ports(base), udp) {
			return base
		}
	}
	t.Fatal("no free base port for a cluster in 20000-29900")
	return 0
}

func allFree(ports []int, udp bool) bool {
	var open []func() error
	defer func() {
		for _, c := range open {
			_ = c()
		}
	}()
	for _, p := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		open = append(open, ln.Close)
		if udp {
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				return false
			}
			open = append(open, pc.Close)
		}
	}
	return true
}

// do runs `mw.sh <command> <names...>` on the cluster; the output goes to
// the test log when it fails.
func (c *cluster) do(t testing.TB, command string, names ...string) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mwTimeout)
	defer cancel()
	if len(names) == 0 {
		names = []string{c.name}
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{c.script, command}, names...)...)
	cmd.Env = c.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("mw.sh %s %s (private %s, base port %d) in %s", command, strings.Join(names, " "), c.name, c.base, took.Round(time.Millisecond))
	if err != nil {
		t.Logf("mw.sh output:\n%s", out)
		return took, fmt.Errorf("mw.sh %s %s: %w", command, strings.Join(names, " "), err)
	}
	return took, nil
}

// start starts every node that is not running and waits until each answers.
func (c *cluster) start(t testing.TB) {
	t.Helper()
	if _, err := c.do(t, "start"); err != nil {
		t.Fatal(err)
	}
}

// stop stops the cluster and removes its state.
func (c *cluster) stop(t testing.TB) {
	if _, err := c.do(t, "stop"); err != nil {
		t.Errorf("stop %s: %v", c.name, err)
	}
	_ = os.RemoveAll(c.run)
}

// kill9 kills node n ("2", "client") with SIGKILL.
func (c *cluster) kill9(t testing.TB, n string) {
	t.Helper()
	if _, err := c.do(t, "kill9", c.name+":"+n); err != nil {
		t.Fatal(err)
	}
}

// stderrT is a testing.TB for cleanups that run after every test (TestMain).
type stderrT struct{ testing.TB }

func (stderrT) Helper()                   {}
func (stderrT) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (stderrT) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, "ERROR: "+f+"\n", a...) }
