package testenv

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConsulBinary returns the consul binary scripts/mw.sh built, or "".
func ConsulBinary() string {
	if p := os.Getenv("HGP_MW_BIN_CONSUL"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(home, ".cache", "highgopress", "bin", "consul")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// ConsulAgent is a `consul agent -dev` of one test alone, on its own
// loopback ports, so it can be killed and restarted without disturbing the
// shared agent.
type ConsulAgent struct {
	bin  string
	args []string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartConsulAgent starts a private agent and waits until it has a leader;
// it is killed at the end of the test.
func StartConsulAgent(t testing.TB) *ConsulAgent {
	t.Helper()
	return startConsul(t, "-dev")
}

// StartConsulServer starts a private single-server agent that keeps its
// state (KV included) in a data directory across Kill and Start, as a
// production server does; a -dev agent forgets everything when it stops.
func StartConsulServer(t testing.TB) *ConsulAgent {
	t.Helper()
	return startConsul(t, "-server", "-bootstrap-expect", "1", "-data-dir", t.TempDir(), "-node", "hgp-test-server")
}

// startConsul starts a private agent with mode (its first arguments) on
// free loopback ports and waits until it has a leader.
func startConsul(t testing.TB, mode ...string) *ConsulAgent {
	t.Helper()
	bin := ConsulBinary()
	if bin == "" {
		lookup(t, "HGP_MW_BIN_CONSUL", "consul binary (scripts/mw.sh install consul)")
		bin = ConsulBinary()
	}
	httpPort := FreePort(t)
	hcl := fmt.Sprintf(`ports { grpc = -1, grpc_tls = -1, dns = -1, serf_lan = %d, serf_wan = %d, server = %d }`,
		FreePort(t), FreePort(t), FreePort(t))
	a := &ConsulAgent{
		bin:  bin,
		addr: "127.0.0.1:" + strconv.Itoa(httpPort),
		args: append(append([]string{"agent"}, mode...), "-bind", "127.0.0.1", "-client", "127.0.0.1",
			"-http-port", strconv.Itoa(httpPort), "-hcl", hcl, "-log-level", "warn"),
	}
	a.Start(t)
	t.Cleanup(a.Kill)
	return a
}

// Addr is the agent's HTTP address.
func (a *ConsulAgent) Addr() string { return a.addr }

// Start (re)starts the agent on its ports and waits for a leader.
func (a *ConsulAgent) Start(t testing.TB) {
	t.Helper()
	a.cmd = exec.Command(a.bin, a.args...)
	a.cmd.Stdout, a.cmd.Stderr = io.Discard, io.Discard
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	a.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(a.cmd, a.done)
	client := &http.Client{Timeout: time.Second}
	Eventually(t, 30*time.Second, "private consul agent leader", func() bool {
		resp, err := client.Get("http://" + a.addr + "/v1/status/leader")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Trim(strings.TrimSpace(string(b)), `"`) != ""
	})
}

// Kill stops the agent with SIGKILL and waits for it to exit.
func (a *ConsulAgent) Kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}
