package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake server (HGP_MW_TEST_FAKE=<mode>, its
// state dir as the argument): process management is tested without any
// middleware installed.
func TestMain(m *testing.M) {
	if mode := os.Getenv("HGP_MW_TEST_FAKE"); mode != "" {
		fakeServer(mode, os.Args[len(os.Args)-1])
		return
	}
	os.Exit(m.Run())
}

func fakeServer(mode, dir string) {
	switch mode {
	case "crash":
		fmt.Println("boom: cannot start")
		os.Exit(3)
	case "ignore-term":
		// no Notify afterwards: it would deliver SIGTERM again
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("fake server up, ignoring SIGTERM")
		_ = os.WriteFile(filepath.Join(dir, "healthy"), nil, 0o644)
		select {}
	case "unhealthy":
		dir = "" // never healthy
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("fake server up")
	if dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "healthy"), nil, 0o644)
	}
	<-term
	fmt.Println("fake server stopping")
}

// safeBuffer collects the progress log of concurrent health waits.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeSetup is a mw on a temporary state dir and a fake server in mode.
func fakeSetup(t *testing.T, mode string, ports ...int) (*mw, *server, *safeBuffer) {
	t.Helper()
	t.Setenv("HGP_MW_TEST_FAKE", mode) // inherited by the launched process only
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Root: t.TempDir(), Run: t.TempDir()}
	log := &safeBuffer{}
	m := newMW(cfg, log)
	m.pollEvery = 10 * time.Millisecond
	fake := &server{
		name:         "fake",
		exe:          func(*Config) string { return exe },
		startTimeout: 60 * time.Second, stopTimeout: 60 * time.Second,
		ports: func(*Config) []int { return ports },
		addr:  func(*Config) string { return "fake-addr" },
		prepare: func(_ context.Context, m *mw) error {
			return os.MkdirAll(m.cfg.Dir("fake"), 0o755)
		},
		command: func(c *Config) ([]string, error) { return []string{exe, c.Dir("fake") + "/"}, nil },
		health: func(_ context.Context, c *Config) error {
			_, err := os.Stat(filepath.Join(c.Dir("fake"), "healthy"))
			return err
		},
		env: func(*Config) ([][2]string, error) { return nil, nil },
	}
	t.Cleanup(func() { m.Kill9([]*server{fake}) })
	return m, fake, log
}

func TestPIDFileTellsOurProcessFromARecycledPID(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "x.pid")
	if err := writePIDFile(pf, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if pid, ok := readPIDFile(pf); !ok || pid != os.Getpid() {
		t.Fatalf("own pid file: %d %v", pid, ok)
	}
	b, _ := os.ReadFile(pf)
	if f := strings.Fields(string(b)); len(f) != 2 || f[1] != startTime(os.Getpid()) || f[1] == "" {
		t.Fatalf("pid file %q: want \"pid starttime\"", b)
	}
	// same pid, other start time: a recycled pid is not ours
	for _, text := range []string{
		strconv.Itoa(os.Getpid()) + " 1\n",
		strconv.Itoa(os.Getpid()) + " \n", // written when the process had already gone
		"garbage\n", "",
	} {
		if err := os.WriteFile(pf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if pid, ok := readPIDFile(pf); ok {
			t.Errorf("pid file %q: taken as running pid %d", text, pid)
		}
	}
	if _, ok := readPIDFile(filepath.Join(dir, "missing.pid")); ok {
		t.Error("missing pid file taken as running")
	}
}

func TestZombieIsNotRunning(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// not reaped yet: a zombie, which has no start time and no live thread
	deadline := time.After(30 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond) // polling /proc
	defer poll.Stop()
	for startTime(pid) != "" {
		select {
		case <-deadline:
			t.Fatal("child never became a zombie")
		case <-poll.C:
		}
	}
	if lingers(pid) {
		t.Error("zombie lingers")
	}
	_ = cmd.Wait()
	if startTime(pid) != "" || lingers(pid) {
		t.Error("reaped process still seen")
	}
	if startTime(os.Getpid()) == "" || !lingers(os.Getpid()) {
		t.Error("own process not seen")
	}
}

func TestPortOwnerNamesTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	busy, who := portOwner(port)
	if !busy || !strings.HasPrefix(who, "pid "+strconv.Itoa(os.Getpid())+" (") {
		t.Errorf("listening port %d: busy %v, owner %q", port, busy, who)
	}
	ln.Close()
	if busy, who := portOwner(port); busy {
		t.Errorf("closed port %d: busy, owner %q", port, who)
	}
}

func TestStartWaitsForHealthAndStopEndsTheProcess(t *testing.T) {
	m, fake, log := fakeSetup(t, "serve")
	ctx := context.Background()
	if err := m.Start(ctx, []*server{fake}); err != nil {
		t.Fatalf("start: %v\n%s", err, log)
	}
	pid, ok := m.runningPID(fake)
	if !ok || !lingers(pid) {
		t.Fatalf("not running after start:\n%s", log)
	}
	// its own session, so a terminal's Ctrl-C or the caller's end does not reach it
	if f, err := statFields(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || f[3] != strconv.Itoa(pid) {
		t.Errorf("session of %d: %v %v, want its own", pid, f, err)
	}
	for _, want := range []string{"fake: launched pid " + strconv.Itoa(pid), "fake: ready at fake-addr in ", "started fake in "} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	text, _ := os.ReadFile(m.cfg.LogFile("fake"))
	if !strings.Contains(string(text), " mw.sh start: ") || !strings.Contains(string(text), "fake server up") {
		t.Errorf("server log lacks the launch marker or its output:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(m.cfg.Run, "env")); err != nil {
		t.Errorf("env file: %v", err)
	}

	// a second start leaves a healthy server alone
	if err := m.Start(ctx, []*server{fake}); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.runningPID(fake); again != pid || !strings.Contains(log.String(), "already running (pid "+strconv.Itoa(pid)+"), healthy") {
		t.Errorf("second start: pid %d (was %d)\n%s", again, pid, log)
	}

	if err := m.Stop([]*server{fake}); err != nil {
		t.Fatal(err)
	}
	if lingers(pid) {
		t.Error("process alive after stop")
	}
	if _, err := os.Stat(m.cfg.PIDFile("fake")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after stop: %v", err)
	}
	text, _ = os.ReadFile(m.cfg.LogFile("fake"))
	if !strings.Contains(string(text), "fake server stopping") {
		t.Errorf("stopped without SIGTERM:\n%s", text)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	m, fake, log := fakeSetup(t, "ignore-term")
	m.cfg.StopTimeout = 300 * time.Millisecond
	if err := m.Start(context.Background(), []*server{fake}); err != nil {
		t.Fatalf("start: %v\n%s", err, log)
	}
	pid, _ := m.runningPID(fake)
	m.stopOne(fake, false)
	if lingers(pid) {
		t.Fatal("process alive after stop")
	}
	if !strings.Contains(log.String(), "still alive after 300ms (pids "+strconv.Itoa(pid)+"), sending KILL") {
		t.Errorf("log:\n%s", log)
	}
}

func TestStartReportsAServerThatExits(t *testing.T) {
	m, fake, log := fakeSetup(t, "crash")
	err := m.Start(context.Background(), []*server{fake})
	if err == nil || err.Error() != "failed to start: fake" {
		t.Fatalf("start: %v", err)
	}
	for _, want := range []string{"fake: process exited during startup", "---- last 40 lines of ", "boom: cannot start", "fake: FAILED to start; stopping it"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, ok := m.runningPID(fake); ok {
		t.Error("still recorded as running")
	}
}

func TestStartGivesUpAfterTheDeadline(t *testing.T) {
	m, fake, log := fakeSetup(t, "unhealthy")
	m.cfg.StartTimeout = 300 * time.Millisecond
	err := m.Start(context.Background(), []*server{fake})
	if err == nil || !strings.Contains(log.String(), "fake: not healthy after 300ms") {
		t.Fatalf("start: %v\n%s", err, log)
	}
	if pids := m.allPIDs(fake); len(pids) != 0 {
		t.Errorf("unhealthy server left running: %v", pids)
	}
}

func TestStraysAreFoundStoppedAndReplaced(t *testing.T) {
	m, fake, log := fakeSetup(t, "serve")
	ctx := context.Background()
	if err := m.Start(ctx, []*server{fake}); err != nil {
		t.Fatalf("start: %v\n%s", err, log)
	}
	pid, _ := m.runningPID(fake)
	if err := os.Remove(m.cfg.PIDFile("fake")); err != nil { // the pid file is lost
		t.Fatal(err)
	}
	if st := m.strays(fake); len(st) != 1 || st[0] != pid {
		t.Fatalf("strays %v, want [%d]", st, pid)
	}
	if err := m.Start(ctx, []*server{fake}); err != nil {
		t.Fatalf("start: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "fake: stopping stray processes "+strconv.Itoa(pid)) || lingers(pid) {
		t.Errorf("stray %d not stopped:\n%s", pid, log)
	}
	newPID, ok := m.runningPID(fake)
	if !ok || newPID == pid {
		t.Fatalf("no new server: %d %v", newPID, ok)
	}
	m.Kill9([]*server{fake})
	if lingers(newPID) || !strings.Contains(log.String(), "fake: killed with SIGKILL (pids "+strconv.Itoa(newPID)+")") {
		t.Errorf("kill9:\n%s", log)
	}
}

func TestStartRefusesABusyPortAndNamesItsProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	m, fake, _ := fakeSetup(t, "serve", port)
	err = m.Start(context.Background(), []*server{fake})
	want := fmt.Sprintf("fake: port %d is already in use by another process: pid %d (", port, os.Getpid())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("start: %v, want %q...", err, want)
	}
	if _, ok := m.runningPID(fake); ok {
		t.Error("launched anyway")
	}
}

func TestLockQueuesCallers(t *testing.T) {
	m := newMW(Config{Run: t.TempDir()}, &safeBuffer{})
	unlock, err := m.lock(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.lock(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "could not take") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := m.lock(10 * time.Second)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
