package pipetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
)

// Private is a middleware server of scripts/mw.sh started for one test only:
// its own run directory (HGP_MW_RUN) and its own loopback ports, so a test
// can restart or kill it without disturbing the shared servers.
type Private struct {
	t      testing.TB
	Name   string
	script string
	env    []string
	// Port is the server's main port on 127.0.0.1.
	Port int
	// ports are all its listening ports.
	ports []int
}

// mwTimeout bounds every mw.sh call (Kafka may need a JVM start plus the
// dead broker's session timeout).
const mwTimeout = 4 * time.Minute

// mwScript finds scripts/mw.sh: HGP_MW_SCRIPT (exported by mw.sh into
// .run/env), else the nearest scripts/mw.sh above the test's directory.
func mwScript(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HGP_MW_SCRIPT"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "scripts", "mw.sh")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("scripts/mw.sh not found above the test directory; set HGP_MW_SCRIPT")
		}
		dir = parent
	}
}

// StartPrivate starts a private instance of name (kafka, mariadb or redis)
// with scripts/mw.sh and stops it when the test ends.
func StartPrivate(t testing.TB, name string) *Private {
	t.Helper()
	p := &Private{t: t, Name: name, script: mwScript(t), Port: testenv.FreePort(t)}
	p.ports = []int{p.Port}
	env := []string{"HGP_MW_RUN=" + t.TempDir()}
	switch name {
	case "kafka":
		controller := testenv.FreePort(t)
		p.ports = append(p.ports, controller)
		env = append(env, "HGP_MW_KAFKA_PORT="+strconv.Itoa(p.Port), "HGP_MW_KAFKA_CONTROLLER_PORT="+strconv.Itoa(controller))
	case "mariadb":
		env = append(env, "HGP_MW_MARIADB_PORT="+strconv.Itoa(p.Port))
	case "redis":
		env = append(env, "HGP_MW_REDIS_PORT="+strconv.Itoa(p.Port))
	default:
		t.Fatalf("no private %s", name)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HGP_MW_RUN" || strings.HasPrefix(k, "HGP_MW_") && strings.HasSuffix(k, "_PORT") {
			continue // never inherit another instance's run dir or ports
		}
		p.env = append(p.env, kv)
	}
	p.env = append(p.env, env...)
	t.Cleanup(func() {
		if err := p.Do("stop"); err != nil {
			t.Errorf("stop private %s: %v", name, err)
		}
	})
	if err := p.Do("start"); err != nil {
		t.Fatalf("start private %s: %v", name, err)
	}
	return p
}

// Addr is the server's address.
func (p *Private) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// DSN is the MySQL DSN of a private mariadb (user hgp, database highgopress).
func (p *Private) DSN() string {
	return "hgp:hgp@tcp(" + p.Addr() + ")/highgopress?parseTime=true&multiStatements=true"
}

// Do runs `mw.sh <command> <name>` (start, stop, restart, kill9) against
// this instance; the output is logged.
func (p *Private) Do(command string) error {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mwTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", p.script, command, p.Name)
	cmd.Env = p.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	p.t.Logf("mw.sh %s %s (private, %s) in %s", command, p.Name, p.Addr(), time.Since(start).Round(time.Millisecond))
	if err != nil {
		p.t.Logf("mw.sh output:\n%s", out)
	}
	return err
}

// Kill9 kills the server with SIGKILL (`mw.sh kill9`) and waits until
// nothing listens on its ports any more: mw.sh returns once the main thread
// is a zombie, while the other threads of a JVM may still hold the
// listening sockets for a moment, and an immediate start would then fail
// with "port already in use".
func (p *Private) Kill9() error {
	p.t.Helper()
	if err := p.Do("kill9"); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, port := range p.ports {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err != nil {
				break
			}
			_ = c.Close()
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: port %d still accepts connections 60s after kill9", p.Name, port)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	return nil
}
