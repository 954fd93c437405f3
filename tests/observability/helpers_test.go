package observability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// redisDB is this package's Redis database.
const redisDB = 7

// root is the checkout.
func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// require returns an environment variable set by scripts/mw.sh, failing
// (HGP_INTEGRATION=require) or skipping the test without it.
func require(t testing.TB, name, what string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if os.Getenv("HGP_INTEGRATION") == "require" {
		t.Fatalf("%s is not set: %s is required (scripts/mw.sh start %s)", name, what, what)
	}
	t.Skipf("%s not set: skipping a test that needs a real %s", name, what)
	return ""
}

var builds struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// binary builds the gateway, counter, consumer and devtoken commands once
// per test run and returns the path of one.
func binary(t testing.TB, name string) string {
	t.Helper()
	builds.once.Do(func() {
		dir, err := os.MkdirTemp("", "hgp-observability-")
		if err != nil {
			builds.err = err
			return
		}
		builds.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/",
			"github.com/highgopress/highgopress/services/gateway/cmd/gateway",
			"github.com/highgopress/highgopress/services/gateway/cmd/devtoken",
			"github.com/highgopress/highgopress/services/counter/cmd/counter",
			"github.com/highgopress/highgopress/services/consumer/cmd/consumer",
			"github.com/highgopress/highgopress/services/analytics/cmd/analytics")
		cmd.Dir = root(t)
		out, err := cmd.CombinedOutput()
		builds.err, builds.out = err, string(out)
	})
	if builds.err != nil {
		t.Fatalf("go build: %v\n%s", builds.err, builds.out)
	}
	return filepath.Join(builds.dir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// proc is a service process on loopback.
type proc struct {
	name string
	addr string // its service port
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.SyncBuffer
}

// start runs a service binary with exactly env (plus PATH and HOME) and
// waits until its gRPC health check answers SERVING on addr.
func start(t testing.TB, name, addr string, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t, name))
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
			t.Fatalf("%s exited during start-up:\n%s", name, p.logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		return err == nil && res.Status == grpchealth.StatusServing
	})
	return p
}

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
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// getJSON GETs base+path with query and decodes the JSON answer into out.
func getJSON(ctx context.Context, base, path string, query url.Values, out any) error {
	u := strings.TrimRight(base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, tail(string(body), 5))
	}
	return json.Unmarshal(body, out)
}
