package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mw runs the commands against one configuration.
type mw struct {
	cfg Config
	// log receives the "[mw 12:00:00] ..." progress lines (stderr).
	log io.Writer
	mu  sync.Mutex
	// pollEvery is how often a start checks a server's health.
	pollEvery time.Duration
}

func newMW(cfg Config, log io.Writer) *mw {
	return &mw{cfg: cfg, log: log, pollEvery: 200 * time.Millisecond}
}

func (m *mw) logf(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintf(m.log, "[mw %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// since formats an elapsed time as the script did: "12.3s" (tenths, truncated).
func since(t0 time.Time) string {
	us := time.Since(t0).Microseconds()
	return fmt.Sprintf("%d.%ds", us/1000000, (us%1000000)/100000)
}

func (m *mw) startTimeout(s *server) time.Duration {
	if m.cfg.StartTimeout > 0 {
		return m.cfg.StartTimeout
	}
	return s.startTimeout
}

func (m *mw) stopTimeout(s *server) time.Duration {
	if m.cfg.StopTimeout > 0 {
		return m.cfg.StopTimeout
	}
	return s.stopTimeout
}

// runningPID is the pid of the server's recorded process if it is alive.
func (m *mw) runningPID(s *server) (int, bool) { return readPIDFile(m.cfg.PIDFile(s.name)) }

// strays are processes of the server's executable whose command line names
// this state dir (<run>/<name>/) but that are not the recorded one.
func (m *mw) strays(s *server) []int {
	exe, err := lookPath(s.exe(&m.cfg))
	if err != nil {
		return nil
	}
	return findProcs(exe, m.cfg.Dir(s.name)+"/")
}

// allPIDs is the recorded process and every stray.
func (m *mw) allPIDs(s *server) []int {
	var pids []int
	if pid, ok := m.runningPID(s); ok {
		pids = append(pids, pid)
	}
	for _, p := range m.strays(s) {
		if !slices.Contains(pids, p) {
			pids = append(pids, p)
		}
	}
	return pids
}

// lock serialises the mutating commands of every caller of one state dir
// (tests restarting a server while another starts). The servers never
// inherit the descriptor (close-on-exec).
func (m *mw) lock(within time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(m.cfg.Run, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(m.cfg.Run, ".mw.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() { _ = f.Close() }, nil
	case <-time.After(within):
		go func() { // should the wait still succeed, let the lock go at once
			<-done //nolint:errcheck // only waiting for the flock call to return
			_ = f.Close()
		}()
		return nil, fmt.Errorf("could not take %s within %s", path, within)
	}
}

// ----------------------------------------------------------------- start

// exited is closed when a launched process ends (it is reaped by us).
type launched struct {
	pid    int
	exited chan struct{}
	err    error
}

// launch starts a server in its own session (setsid: a Ctrl-C in the
// terminal or the end of the calling shell does not reach it), its output
// appended to its log, and records its pid.
func (m *mw) launch(s *server) (*launched, error) {
	argv, err := s.command(&m.cfg)
	if err != nil {
		return nil, err
	}
	bin, err := lookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	lf, err := os.OpenFile(m.cfg.LogFile(s.name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "\n===== %s mw.sh start: %s\n", time.Now().Format(isoSeconds), strings.Join(argv, " "))
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdout, cmd.Stderr = lf, lf // stdin: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: launch %s: %w", s.name, bin, err)
	}
	l := &launched{pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() { l.err = cmd.Wait(); close(l.exited) }()
	if err := writePIDFile(m.cfg.PIDFile(s.name), l.pid); err != nil {
		return nil, err
	}
	m.logf("%s: launched pid %d (log %s)", s.name, l.pid, m.cfg.rel(m.cfg.LogFile(s.name)))
	return l, nil
}

// isoSeconds is `date -Is`.
const isoSeconds = "2006-01-02T15:04:05-07:00"

// waitHealthy polls the server's health until it passes (then runs its
// ready step), its process dies or its deadline passes.
func (m *mw) waitHealthy(ctx context.Context, s *server, t0 time.Time, l *launched) error {
	deadline := time.Now().Add(m.startTimeout(s))
	var last error
	for {
		if last = s.health(ctx, &m.cfg); last == nil {
			if s.ready != nil {
				if err := s.ready(ctx, m); err != nil {
					m.logf("%s", err)
					return err
				}
			}
			m.logf("%s: ready at %s in %s", s.name, s.addr(&m.cfg), since(t0))
			return nil
		}
		exited := false
		if l != nil {
			select {
			case <-l.exited:
				exited = true
			default:
			}
		}
		if _, ok := m.runningPID(s); exited || !ok {
			m.logf("%s: process exited during startup", s.name)
			if l != nil {
				select {
				case <-l.exited: // reaped: its exit status is known
					if l.err != nil {
						return fmt.Errorf("%s exited during startup: %w", s.name, l.err)
					}
				case <-time.After(time.Second):
				}
			}
			return fmt.Errorf("%s exited during startup", s.name)
		}
		if time.Now().After(deadline) {
			m.logf("%s: not healthy after %s (%v)", s.name, m.startTimeout(s), last)
			return fmt.Errorf("%s not healthy after %s: %w", s.name, m.startTimeout(s), last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.pollEvery):
		case <-exitedChan(l):
		}
	}
}

func exitedChan(l *launched) <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.exited
}

// Start installs nothing (scripts/mw.sh did), then for every server: a
// healthy running one is left alone, strays are stopped, the ports must be
// free, configs are written; all are launched at once and waited for
// together. The env file is rewritten; failed servers are stopped again.
func (m *mw) Start(ctx context.Context, list []*server) error {
	tAll := time.Now()
	type job struct {
		s  *server
		t0 time.Time
		l  *launched
	}
	var waiting, toLaunch []*job
	for _, s := range list {
		j := &job{s: s, t0: time.Now()}
		if pid, ok := m.runningPID(s); ok {
			if s.health(ctx, &m.cfg) == nil {
				m.logf("%s: already running (pid %d), healthy", s.name, pid)
				continue
			}
			m.logf("%s: running (pid %d) but not healthy yet; waiting", s.name, pid)
			waiting = append(waiting, j)
			continue
		}
		// strays from a lost pid file would hold the ports and the data dir
		if st := m.strays(s); len(st) > 0 {
			m.logf("%s: stopping stray processes %s", s.name, joinInts(st))
			m.stopOne(s, true)
		}
		for _, p := range s.ports(&m.cfg) {
			if busy, who := portOwner(p); busy {
				return fmt.Errorf("%s: port %d is already in use by another process: %s", s.name, p, who)
			}
		}
		if err := s.prepare(ctx, m); err != nil {
			return err
		}
		toLaunch = append(toLaunch, j)
	}
	var failed []*server
	for _, j := range toLaunch {
		j.t0 = time.Now()
		if s := j.s; s.beforeLaunch != nil {
			if err := s.beforeLaunch(&m.cfg); err != nil {
				return err
			}
		}
		l, err := m.launch(j.s)
		if err != nil {
			m.logf("%v", err)
			failed = append(failed, j.s)
			continue
		}
		j.l = l
		waiting = append(waiting, j)
	}
	errs := make([]error, len(waiting))
	var wg sync.WaitGroup
	for i, j := range waiting {
		wg.Go(func() { errs[i] = m.waitHealthy(ctx, j.s, j.t0, j.l) })
	}
	wg.Wait()
	for i, j := range waiting {
		if errs[i] != nil {
			m.showLogTail(j.s)
			failed = append(failed, j.s)
		}
	}
	for _, s := range failed {
		m.logf("%s: FAILED to start; stopping it", s.name)
		m.stopOne(s, true)
	}
	if err := m.writeEnv(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed to start: %s", namesOf(failed))
	}
	m.logf("started %s in %s; env: %s", namesOf(list), since(tAll), m.cfg.rel(filepath.Join(m.cfg.Run, "env")))
	return nil
}

// namesOf is "redis kafka".
func namesOf(list []*server) string {
	n := make([]string, len(list))
	for i, s := range list {
		n[i] = s.name
	}
	return strings.Join(n, " ")
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " ")
}

// ------------------------------------------------------------- stop, kill

// stopOne sends TERM, waits with the server's deadline, then KILL (and up
// to 10 s more); strays are caught too.
func (m *mw) stopOne(s *server, quiet bool) {
	pids := m.allPIDs(s)
	if len(pids) == 0 {
		if !quiet {
			m.logf("%s: not running", s.name)
		}
		_ = os.Remove(m.cfg.PIDFile(s.name))
		return
	}
	t0 := time.Now()
	signalAll(pids, syscall.SIGTERM)
	if alive := waitGone(pids, m.stopTimeout(s), 100*time.Millisecond); len(alive) > 0 {
		m.logf("%s: still alive after %s (pids %s), sending KILL", s.name, m.stopTimeout(s), joinInts(alive))
		signalAll(alive, syscall.SIGKILL)
		waitGone(alive, 10*time.Second, 100*time.Millisecond)
	}
	_ = os.Remove(m.cfg.PIDFile(s.name))
	m.logf("%s: stopped (pids %s) in %s", s.name, joinInts(pids), since(t0))
}

// Stop stops every server of the list, all at once (a cluster's members
// together: the last nodes of a quorum cannot finish a controlled shutdown
// once the others are gone), and rewrites the env file.
func (m *mw) Stop(list []*server) error {
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Go(func() { m.stopOne(s, false) })
	}
	wg.Wait()
	return m.writeEnv()
}

// Kill9 sends SIGKILL and waits (up to 10 s) until no thread of the
// process runs any more; `start` brings the server back on the same data.
func (m *mw) Kill9(list []*server) {
	for _, s := range list {
		pids := m.allPIDs(s)
		if len(pids) == 0 {
			m.logf("%s: not running", s.name)
			continue
		}
		signalAll(pids, syscall.SIGKILL)
		waitGone(pids, 10*time.Second, 50*time.Millisecond)
		_ = os.Remove(m.cfg.PIDFile(s.name))
		m.logf("%s: killed with SIGKILL (pids %s)", s.name, joinInts(pids))
	}
}

// Restart stops gracefully (quietly), then starts.
func (m *mw) Restart(ctx context.Context, list []*server) error {
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Go(func() { m.stopOne(s, true) })
	}
	wg.Wait()
	return m.Start(ctx, list)
}

// ------------------------------------------------------------ read only

// Status writes one line per server: state, pid, address, health.
func (m *mw) Status(ctx context.Context, w io.Writer) {
	line := func(a, b, c, d, e string) { fmt.Fprintf(w, "%-11s %-9s %-8s %-24s %s\n", a, b, c, d, e) }
	line("SERVER", "STATE", "PID", "ADDRESS", "HEALTH")
	for _, s := range servers {
		state, pidS, health := "stopped", "-", "-"
		if pid, ok := m.runningPID(s); ok {
			state, pidS, health = "running", strconv.Itoa(pid), "ok"
			if s.health(ctx, &m.cfg) != nil {
				health = "FAILING"
			}
		} else if len(m.strays(s)) > 0 {
			state = "stray"
		}
		line(s.name, state, pidS, s.addr(&m.cfg), health)
	}
}

// EnvLines are the `export` lines for every running server (the env file).
func (m *mw) EnvLines(now time.Time) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by scripts/mw.sh at %s — servers running at that moment\n", now.Format(isoSeconds))
	seen := map[string]bool{} // a cluster's members export the same variables once
	export := func(k, v string) {
		if !seen[k] {
			seen[k] = true
			fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
		}
	}
	export("HGP_MW_SCRIPT", m.cfg.Script())
	export("HGP_MW_RUN_DIR", m.cfg.Run)
	for _, s := range servers {
		if _, ok := m.runningPID(s); !ok {
			continue
		}
		kvs, err := s.env(&m.cfg)
		if err != nil {
			return "", err
		}
		for _, kv := range kvs {
			export(kv[0], kv[1])
		}
	}
	return b.String(), nil
}

// shellQuote quotes v for a POSIX shell: in single quotes, each quote inside closed, escaped and reopened.
func shellQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }

// writeEnv replaces <run>/env atomically.
func (m *mw) writeEnv() error {
	text, err := m.EnvLines(time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cfg.Run, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(m.cfg.Run, "env.tmp."+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.cfg.Run, "env"))
}

// ------------------------------------------------------------------ logs

// launchMarker starts every run's part of a server log.
const launchMarker = "mw.sh start: "

// showLogTail prints the current run's part of the log (since the last
// launch marker, at most 40 lines) and, for Kafka, the broker log's tail.
func (m *mw) showLogTail(s *server) {
	lf := m.cfg.LogFile(s.name)
	m.logf("---- last 40 lines of %s ----", lf)
	if text, err := readTail(lf, 4<<20); err == nil {
		m.mu.Lock()
		fmt.Fprint(m.log, tailLines(sinceLastMarker(text), 40))
		m.mu.Unlock()
	}
	if s.extraLog != nil {
		if text, err := readTail(s.extraLog(&m.cfg), 1<<20); err == nil {
			m.logf("---- last 20 lines of %s ----", s.extraLog(&m.cfg))
			m.mu.Lock()
			fmt.Fprint(m.log, tailLines(text, 20))
			m.mu.Unlock()
		}
	}
	m.logf("---- end of log ----")
}

// sinceLastMarker is the text from the last "===== <time> mw.sh start: ..."
// line on (all of it when there is none).
func sinceLastMarker(text string) string {
	lines := strings.SplitAfter(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "===== ") && strings.Contains(lines[i], " "+launchMarker) {
			return strings.Join(lines[i:], "")
		}
	}
	return text
}

// tailLines is the last n lines of text (each ending in a newline).
func tailLines(text string, n int) string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// readTail reads at most the last max bytes of a file.
func readTail(path string, max int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max64(0, st.Size()-max)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return string(b), nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Logs writes the last n lines of the server's log.
func (m *mw) Logs(w io.Writer, s *server, n int) error {
	text, err := readTail(m.cfg.LogFile(s.name), 8<<20)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, tailLines(text, n))
	return err
}

// ----------------------------------------------------------------- kafka

// KafkaTopics runs Kafka's TopicCommand against the running broker
// (--bootstrap-server is added), output passed through.
func (m *mw) KafkaTopics(ctx context.Context, args []string) error {
	if _, ok := m.runningPID(kafkaServer); !ok {
		return errors.New("kafka is not running (scripts/mw.sh start kafka)")
	}
	argv := kafkaJava(&m.cfg, "org.apache.kafka.tools.TopicCommand",
		append([]string{"--bootstrap-server", hostPort(m.cfg.KafkaPort)}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
