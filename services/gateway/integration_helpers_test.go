package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
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
	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// tmpRoot holds what the test binary builds (the counter command); removed
// by TestMain.
var tmpRoot string

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		_ = os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

// counterDB is the Redis database the counter processes of these tests use
// (not used by other packages' tests); every test uses its own item ids.
const counterDB = 10

func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e10, rand.IntN(1e6))
}

// testLogger logs into a buffer that is printed if the test fails.
func testLogger(t testing.TB, name string) *slog.Logger {
	buf := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, tail(buf.String(), 60))
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

var counterBuild struct {
	once sync.Once
	path string
	err  error
	out  string
}

// counterBinary builds the counter command once per test binary.
func counterBinary(t testing.TB) string {
	t.Helper()
	counterBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "hgp-gateway-test-")
		if err != nil {
			counterBuild.err = err
			return
		}
		tmpRoot = dir
		root, err := filepath.Abs("../..")
		if err != nil {
			counterBuild.err = err
			return
		}
		path := filepath.Join(dir, "counter")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "github.com/highgopress/highgopress/services/counter/cmd/counter")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		counterBuild.path, counterBuild.err, counterBuild.out = path, err, string(out)
	})
	if counterBuild.err != nil {
		t.Fatalf("go build counter: %v\n%s", counterBuild.err, counterBuild.out)
	}
	return counterBuild.path
}

// counterProc is a counter service process on a loopback port.
type counterProc struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.SyncBuffer
}

// startCounter runs the counter command against the real Redis (database
// counterDB) with vars added to its environment, and waits until its health
// check answers SERVING.
func startCounter(t testing.TB, redisAddr string, vars map[string]string) *counterProc {
	t.Helper()
	bin := counterBinary(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := map[string]string{
		"HGP_IDENTITY_SECRET":   identitySecret,
		"HGP_REDIS_ADDR":        redisAddr,
		"HGP_REDIS_DB":          strconv.Itoa(counterDB),
		"HGP_COUNTER_ADDR":      addr,
		"HGP_COUNTER_CACHE_TTL": "0s",
		"HGP_LOG_LEVEL":         "info",
	}
	for k, v := range vars {
		env[k] = v
	}
	// A clean environment: nothing from the developer's shell (Kafka,
	// Consul, …) leaks into the process.
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &counterProc{addr: addr, cmd: cmd, done: make(chan struct{}), logs: &testenv.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start counter: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- counter %s log ---\n%s", addr, tail(p.logs.String(), 40))
		}
	})
	hc := grpchealth.NewClient(server.NewH2CClient(), "http://"+addr)
	testenv.Eventually(t, 30*time.Second, "counter "+addr+" serving", func() bool {
		select {
		case <-p.done:
			t.Fatalf("counter %s exited during start-up:\n%s", addr, p.logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		return err == nil && res.Status == grpchealth.StatusServing
	})
	return p
}

// kill9 kills the process (SIGKILL) and waits until it is gone.
func (p *counterProc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop ends the process gracefully (SIGTERM; SIGKILL after 15s).
func (p *counterProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill9()
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func (p *counterProc) peakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read process status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// runningGateway is a gateway built from variables (the way gateway.Build
// does it) and run the way bootstrap.Main does: server and workers until the
// test ends, then an orderly shutdown.
type runningGateway struct {
	g      *gateway.Gateway
	url    string
	client *http.Client // h2c
	http1  *http.Client
	stop   func()
}

// gatewayVars are the variables every test gateway has.
func gatewayVars(vars map[string]string) map[string]string {
	out := map[string]string{
		"HGP_IDENTITY_SECRET":  identitySecret,
		"HGP_JWT_HS256_SECRET": hsSecret,
		"HGP_GATEWAY_ADDR":     "127.0.0.1:0",
	}
	for k, v := range vars {
		out[k] = v
	}
	return out
}

func startGateway(t testing.TB, vars map[string]string, opts ...gateway.Option) *runningGateway {
	t.Helper()
	r := config.FromMap(gatewayVars(vars))
	cfg := gateway.ConfigFrom(r)
	if err := r.Err(); err != nil {
		t.Fatalf("gateway config: %v", err)
	}
	logger := testLogger(t, "gateway")
	g, err := gateway.New(logger, cfg, opts...)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	comp := g.Component()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	comp.Listener = ln
	run := testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logger, comp) })
	stop := func() {
		if err := run.Stop(t); err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
	}
	client := server.NewH2CClient()
	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)
	rg := &runningGateway{g: g, url: "http://" + ln.Addr().String(), client: client, http1: h1, stop: stop}
	return rg
}

// counterRedis is a client for the counters' database, to check state.
func counterRedis(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: counterDB})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis %s: %v", addr, err)
	}
	return rdb
}

// dropItemKeys deletes the counter's keys of items (test cleanup).
func dropItemKeys(rdb *redis.Client, ns string, ids ...string) {
	ctx := context.Background()
	for _, id := range ids {
		rdb.Del(ctx, "hgp:c:{"+ns+":"+id+"}", "hgp:lk:{"+ns+":"+id+"}")
	}
}

func consulAPI(t testing.TB, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consulBinary is the consul command scripts/mw.sh installs.
