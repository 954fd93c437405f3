package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A private redis-server (own state dir, free port) driven through the
// program's commands: start waits for a real PING, status and the env file
// show it, kill9 and restart bring it back on the same data, stop ends it.
func TestPrivateRedisLifecycle(t *testing.T) {
	// The test command installs redis-server (scripts/mw.sh): missing, it
	// is a failure, never a skip.
	if _, err := lookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (bash scripts/mw.sh install redis): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	runDir := t.TempDir()
	env := map[string]string{"HGP_MW_RUN": runDir, "HGP_MW_REDIS_PORT": strconv.Itoa(port)}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var out bytes.Buffer
	do := func(args ...string) {
		t.Helper()
		log := &safeBuffer{}
		if err := run(context.Background(), args, envOf(env), &out, log); err != nil {
			t.Fatalf("mw %s: %v\n%s", strings.Join(args, " "), err, log)
		}
		t.Logf("mw %s:\n%s", strings.Join(args, " "), log)
	}
	t.Cleanup(func() { _ = run(context.Background(), []string{"stop", "redis"}, envOf(env), &out, &safeBuffer{}) })
	cfg, err := ConfigFrom(envOf(env))
	if err != nil {
		t.Fatal(err)
	}

	do("start", "redis")
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "mw-test", "kept", 0).Err(); err != nil {
		t.Fatalf("redis after start: %v", err)
	}
	pid, ok := readPIDFile(cfg.PIDFile("redis"))
	if !ok {
		t.Fatal("no running pid after start")
	}

	out.Reset()
	do("status")
	if !strings.Contains(out.String(), "redis       running   "+strconv.Itoa(pid)) || !strings.Contains(out.String(), addr) ||
		!strings.Contains(strings.SplitN(out.String(), "\n", 3)[1], " ok") {
		t.Errorf("status:\n%s", out.String())
	}
	envFile, _ := os.ReadFile(filepath.Join(runDir, "env"))
	if !strings.Contains(string(envFile), "export HGP_TEST_REDIS_ADDR='"+addr+"'\n") {
		t.Errorf("env file:\n%s", envFile)
	}

	// a graceful restart keeps the data (AOF) and changes the process
	do("restart", "redis")
	newPID, _ := readPIDFile(cfg.PIDFile("redis"))
	if newPID == pid || lingers(pid) {
		t.Errorf("restart: pid %d -> %d (old alive: %v)", pid, newPID, lingers(pid))
	}
	if v, err := rdb.Get(ctx, "mw-test").Result(); err != nil || v != "kept" {
		t.Errorf("after restart: %q %v", v, err)
	}

	do("kill9", "redis")
	if lingers(newPID) {
		t.Fatal("alive after kill9")
	}
	if err := run(ctx, []string{"running", "redis"}, envOf(env), &out, &safeBuffer{}); err != errNotRunning {
		t.Errorf("running after kill9: %v", err)
	}
	do("start", "redis")
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("after kill9 + start: %v", err)
	}

	last, _ := readPIDFile(cfg.PIDFile("redis"))
	do("stop", "redis")
	if lingers(last) {
		t.Error("alive after stop")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("port still accepts connections after stop")
	}
	envFile, _ = os.ReadFile(filepath.Join(runDir, "env"))
	if strings.Contains(string(envFile), "HGP_TEST_REDIS_ADDR") {
		t.Errorf("env file still names redis:\n%s", envFile)
	}
	if err := redisHealth(ctx, &cfg); err == nil {
		t.Error("health passes with the server stopped")
	}
}
