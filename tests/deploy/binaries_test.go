package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
)

// serviceCommands lists the services that have a binary: every
// services/<name>/cmd/<name> of the checkout.
func serviceCommands(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(repoRoot(t), "services", "*", "cmd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		name := filepath.Base(d)
		if filepath.Base(filepath.Dir(filepath.Dir(d))) == name {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
	binLog  []byte
)

// buildBinaries builds every service binary (and the helm test's hgpsmoke)
// the way build/Dockerfile does: CGO_ENABLED=0 with buildFlags.
func buildBinaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "hgp-deploy-bin-")
		if binErr != nil {
			return
		}
		pkgs := []string{"./tests/deploy/cmd/hgpsmoke"}
		for _, s := range serviceCommands(t) {
			pkgs = append(pkgs, "./services/"+s+"/cmd/"+s)
		}
		t0 := time.Now()
		args := append([]string{"build"}, buildFlags...)
		args = append(args, "-o", binDir+"/")
		cmd := exec.Command("go", append(args, pkgs...)...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		binLog, binErr = cmd.CombinedOutput()
		t.Logf("phase static build of %d binaries: %s", len(pkgs), time.Since(t0).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatalf("static build: %v\n%s", binErr, binLog)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestServiceBinaries builds every service statically, checks each binary
// has no ELF interpreter (it runs on distroless/static or scratch), that each
// runs (a bad setting is refused naming the variable) and that the gateway
// answers gRPC health checks; and that every service is in the chart.
func TestServiceBinaries(t *testing.T) {
	dir := buildBinaries(t)
	services := serviceCommands(t)
	if !slices.Contains(services, "gateway") || !slices.Contains(services, "counter") || !slices.Contains(services, "consumer") {
		t.Fatalf("service binaries found: %v", services)
	}
	for _, s := range services {
		if !slices.Contains(components, s) {
			t.Errorf("service %s has a binary but no component in the chart", s)
		}
	}
	for _, c := range components {
		if !slices.Contains(services, c) {
			t.Logf("chart component %s has no services/%s/cmd/%s yet", c, c, c)
		}
	}
	for _, name := range append(slices.Clone(services), "hgpsmoke") {
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (program header %s)", name, p.Type)
			}
		}
		_ = f.Close()
	}

	for _, s := range services {
		t.Run(s+"/refuses bad config", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(dir, s))
			cmd.Env = []string{"HGP_LOG_LEVEL=loud"}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errorsAs(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("%s with HGP_LOG_LEVEL=loud: %v, want exit status 2\n%s", s, err, out)
			}
			if !bytes.Contains(out, []byte("HGP_LOG_LEVEL")) {
				t.Fatalf("%s does not name HGP_LOG_LEVEL:\n%s", s, out)
			}
		})
	}

	t.Run("gateway/health", func(t *testing.T) {
		addr := testenv.ClosedAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "gateway"))
		cmd.Env = []string{
			"HGP_GATEWAY_ADDR=" + addr,
			"HGP_METRICS_ADDR=" + testenv.ClosedAddr(t),
			"HGP_GATEWAY_COUNTER_URLS=http://127.0.0.1:9",
			"HGP_JWT_HS256_SECRET=" + strings.Repeat("k", 40),
			"HGP_IDENTITY_SECRET=" + strings.Repeat("i", 40),
		}
		var logs testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("gateway output:\n%s", logs.String())
			}
		})
		var status string
		testenv.Eventually(t, 30*time.Second, "the static gateway to answer grpc.health.v1 SERVING", func() bool {
			status = healthStatus("http://" + addr)
			return strings.Contains(status, `"SERVING_STATUS_SERVING"`) || strings.Contains(status, `"SERVING"`)
		})
		t.Logf("gateway health: %s", status)
	})
}

// healthStatus asks grpc.health.v1.Health/Check over the Connect protocol.
func healthStatus(base string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.Status + " " + string(b)
}
