package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process bookkeeping on Linux's /proc. A pid file holds "pid starttime"
// (the start time in clock ticks since boot, field 22 of /proc/<pid>/stat)
// so that a recycled pid is never mistaken for our server.

// procRoot is /proc (a variable for tests).
var procRoot = "/proc"

// statFields returns the fields of /proc/<pid>/stat after "(comm)": index 0
// is the state (field 3), index 19 the start time (field 22).
func statFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		return nil, fmt.Errorf("%s: no ')' in %q", path, s)
	}
	return strings.Fields(s[i+2:]), nil
}

// startTime is the process's start time, or "" when it is gone or a zombie.
func startTime(pid int) string {
	f, err := statFields(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil || len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

// lingers reports whether any thread of the process still runs. A killed
// JVM's main thread can be a zombie while other threads still hold its
// listening ports: only a process with no live thread is gone.
func lingers(pid int) bool {
	tasks, _ := filepath.Glob(filepath.Join(procRoot, strconv.Itoa(pid), "task", "*", "stat"))
	for _, t := range tasks {
		if f, err := statFields(t); err == nil && len(f) > 0 && f[0] != "Z" {
			return true
		}
	}
	return false
}

// writePIDFile records pid with its start time.
func writePIDFile(path string, pid int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(pid)+" "+startTime(pid)+"\n"), 0o644)
}

// readPIDFile returns the pid of the pid file if that process is alive and
// is the one that was recorded (same start time).
func readPIDFile(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	if st := startTime(pid); st == "" || st != f[1] {
		return 0, false
	}
	return pid, true
}

// lookPath finds an executable in PATH and the sbin directories (mariadbd
// lives in /usr/sbin, which a user's PATH may lack), resolving symlinks.
func lookPath(file string) (string, error) {
	if strings.Contains(file, "/") {
		return filepath.EvalSymlinks(file)
	}
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin")
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return filepath.EvalSymlinks(p)
		}
	}
	return "", fmt.Errorf("%s: %w", file, exec.ErrNotFound)
}

// findProcs returns the live processes running exe (resolved) whose command
// line contains marker: servers of this state dir that lost their pid file.
func findProcs(exe, marker string) []int {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), marker) {
			continue
		}
		if link, err := os.Readlink(filepath.Join(procRoot, e.Name(), "exe")); err != nil || link != exe {
			continue
		}
		if startTime(pid) != "" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// listener is a listening TCP socket found in /proc/net/tcp{,6}.
type listener struct {
	port  int
	inode string
}

// tcpListeners returns the listening TCP sockets of this network namespace
// (any local address), as `ss -ltn` shows them.
func tcpListeners() ([]listener, error) {
	var out []listener
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		file, err := os.Open(filepath.Join(procRoot, f))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			port, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				continue
			}
			out = append(out, listener{port: int(port), inode: fields[9]})
		}
		err = sc.Err()
		file.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// portOwner says whether something listens on port (TCP, any address) and,
// where /proc lets us see it, which process: "pid 123 (redis-server)".
func portOwner(port int) (bool, string) {
	ls, err := tcpListeners()
	if err != nil {
		return false, ""
	}
	var inodes []string
	for _, l := range ls {
		if l.port == port {
			inodes = append(inodes, "socket:["+l.inode+"]")
		}
	}
	if len(inodes) == 0 {
		return false, ""
	}
	entries, _ := os.ReadDir(procRoot)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join(procRoot, e.Name(), "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(procRoot, e.Name(), "fd", fd.Name()))
			if err == nil && slices.Contains(inodes, link) {
				comm, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
				return true, fmt.Sprintf("pid %s (%s)", e.Name(), strings.TrimSpace(string(comm)))
			}
		}
	}
	return true, "a process this user cannot see"
}

// signalAll sends sig to every pid (errors for processes that are already
// gone are ignored).
func signalAll(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// waitGone polls until no process of pids lingers or the deadline passes,
// and returns the ones still alive.
func waitGone(pids []int, within, every time.Duration) []int {
	deadline := time.Now().Add(within)
	for {
		var alive []int
		for _, p := range pids {
			if lingers(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(every) // polling a process we do not own: no event to wait on
	}
}
