package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
)

// This file drives the standalone mode as a newcomer does: the real binary,
// built from this package, run as its own process, spoken to over HTTP
// (Connect JSON) with the token its banner prints, stopped with SIGTERM.

// buildStandalone builds the binary into a temporary directory.
func buildStandalone(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "standalone")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// standaloneProc is a running standalone binary.
type standaloneProc struct {
	cmd    *exec.Cmd
	done   chan error
	stdout *testenv.SyncBuffer
	stderr *testenv.SyncBuffer

	GatewayURL string
	Token      string
	// MetricsURL serves the process's Prometheus metrics (every
	// component's: they share the default registry).
	MetricsURL string
	// RedisAddr is the embedded Redis (from the start-up log line).
	RedisAddr string
}

var (
	bannerGateway = regexp.MustCompile(`(?m)^\s*gateway:\s+(http://\S+)`)
	bannerToken   = regexp.MustCompile(`(?m)^\s*token:\s+(\S+)`)
	logRedis      = regexp.MustCompile(`"msg":"embedded middleware started"[^\n]*"redis":"([^"]+)"`)
)

// startStandalone runs bin with HGP_GATEWAY_ADDR and HGP_CONSUMER_ADDR on
// free loopback ports plus env ("NAME=value"), waits for its banner and
// stops it (SIGTERM) when the test ends if the test did not.
func startStandalone(t *testing.T, bin string, env ...string) *standaloneProc {
	t.Helper()
	consumerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := &standaloneProc{stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}, done: make(chan error, 1),
		MetricsURL: "http://" + consumerAddr + "/metrics"}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(p.cmd.Environ(),
		fmt.Sprintf("HGP_GATEWAY_ADDR=127.0.0.1:%d", testenv.FreePort(t)),
		"HGP_CONSUMER_ADDR="+consumerAddr)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start standalone: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.Stop(t)
		}
		if t.Failed() {
			t.Logf("standalone stderr (tail):\n%s", tail(p.stderr.String(), 40))
		}
	})
	testenv.Eventually(t, 60*time.Second, "the standalone banner", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("standalone exited before its banner: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout, tail(p.stderr.String(), 40))
		default:
		}
		g, tok := bannerGateway.FindStringSubmatch(p.stdout.String()), bannerToken.FindStringSubmatch(p.stdout.String())
		r := logRedis.FindStringSubmatch(p.stderr.String())
		if g == nil || tok == nil || r == nil {
			return false
		}
		p.GatewayURL, p.Token, p.RedisAddr = g[1], tok[1], r[1]
		return true
	})
	return p
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Stop sends SIGTERM and checks that the process exits cleanly (status 0)
// within 30 s.
func (p *standaloneProc) Stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("standalone exited with %v after SIGTERM\nstderr:\n%s", err, tail(p.stderr.String(), 40))
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done //nolint:errcheck // killed: its exit error says nothing new
		t.Fatal("standalone did not exit within 30s of SIGTERM")
	}
}

// Post sends a Connect JSON request (token "" sends none) and returns the
// HTTP status and the decoded body.
func (p *standaloneProc) Post(t *testing.T, procedure, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.GatewayURL+"/highgopress.counter.v1."+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", procedure, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", procedure, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: %d %q: %v", procedure, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, m
}

// Metric returns the sum of every sample of the named metric (0 when the
// process does not export it yet).
func (p *standaloneProc) Metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.MetricsURL)
	if err != nil {
		t.Fatalf("GET %s: %v", p.MetricsURL, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// NoIdlePollWarnings fails the test if the process logged the Kafka
// reader's idle-poll timeouts as warnings or errors.
func (p *standaloneProc) NoIdlePollWarnings(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, "i/o timeout") && (strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`)) {
			t.Errorf("an idle poll was logged as a fault: %s", line)
		}
	}
}
