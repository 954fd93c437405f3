// Command mw starts, health-checks and stops the project's real middleware
// (redis, mariadb, kafka, consul, prometheus, jaeger, and the clusters
// kafka-cluster, consul-cluster and redis-cluster) as native processes on
// loopback, each with its state under <run>/<name>/ (config, data,
// <name>.log, <name>.pid). scripts/mw.sh installs the servers and runs this
// program for everything else; see docs/middleware.md.
//
//	mw start   <name...>      start, wait until each answers a real client
//	mw stop    <name...|all>  TERM, wait with a deadline, then KILL
//	mw restart <name...>      stop (graceful) + start
//	mw kill9   <name...>      SIGKILL (crash tests; one node: kafka-cluster:2)
//	mw status                 state, pid, address and health of every server
//	mw env                    `export VAR=value` lines for every running server
//	mw running <name>         exit 0 if the server is running (no output)
//	mw logs <name> [lines]    tail of the server's log
//	mw kafka-topic <topic> <partitions>
//	mw kafka-topics <args...>
//	mw names <name...|all>    the servers a list names (for the install step)
//
// start, stop and restart rewrite <run>/env and hold <run>/.mw.lock.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// lockWait bounds how long a mutating command queues behind another.
const lockWait = 900 * time.Second

// errUsage marks a command line that names no known command.
var errUsage = errors.New("usage")

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "usage: mw start|stop|restart|kill9|status|env|running|logs|kafka-topic|kafka-topics|names [args] (see scripts/mw.sh)")
		os.Exit(2)
	case errors.Is(err, errNotRunning):
		os.Exit(1)
	default:
		newMW(Config{}, os.Stderr).logf("ERROR: %v", err)
		os.Exit(exitCode(err))
	}
}

// errNotRunning is `running`'s silent "no".
var errNotRunning = errors.New("not running")

// exitCode passes a tool's exit status (kafka-topics) through.
func exitCode(err error) int {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 1
}

// run executes one command line.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, args := args[0], args[1:]
	cfg, err := ConfigFrom(getenv)
	if err != nil {
		return err
	}
	m := newMW(cfg, stderr)
	locked := func(f func() error) error {
		unlock, err := m.lock(lockWait)
		if err != nil {
			return err
		}
		defer unlock()
		return f()
	}
	switch cmd {
	case "names":
		list, err := expandNames(args)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, namesOf(list))
		return err
	case "start", "stop", "restart", "kill9":
		list, err := expandNames(args)
		if err != nil {
			return err
		}
		return locked(func() error {
			switch cmd {
			case "start":
				return m.Start(ctx, list)
			case "stop":
				return m.Stop(list)
			case "restart":
				return m.Restart(ctx, list)
			default:
				m.Kill9(list)
				return nil
			}
		})
	case "status":
		m.Status(ctx, stdout)
		return nil
	case "env":
		text, err := m.EnvLines(time.Now())
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, text)
		return err
	case "running":
		if len(args) != 1 || oneServer(args[0]) == nil {
			return errors.New("usage: mw.sh running <name>")
		}
		if _, ok := m.runningPID(oneServer(args[0])); !ok {
			return errNotRunning
		}
		return nil
	case "logs":
		if len(args) == 0 {
			return errors.New("usage: mw.sh logs <name> [lines]")
		}
		s := oneServer(args[0])
		if s == nil {
			return fmt.Errorf("unknown server '%s'", args[0])
		}
		n := 50
		if len(args) > 1 {
			if n, err = strconv.Atoi(args[1]); err != nil || n < 0 {
				return fmt.Errorf("logs: %q is not a number of lines", args[1])
			}
		}
		return m.Logs(stdout, s, n)
	case "kafka-topic":
		if len(args) != 2 {
			return errors.New("usage: mw.sh kafka-topic <topic> <partitions>")
		}
		return m.KafkaTopics(ctx, []string{"--create", "--if-not-exists", "--topic", args[0],
			"--partitions", args[1], "--replication-factor", "1"})
	case "kafka-topics":
		return m.KafkaTopics(ctx, args)
	default:
		return errUsage
	}
}
