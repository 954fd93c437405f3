package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/liveconfig"
	"github.com/highgopress/highgopress/services/analytics"
	"github.com/highgopress/highgopress/services/consumer"
	"github.com/highgopress/highgopress/services/counter"
	"github.com/highgopress/highgopress/services/gateway"
)

// schemas are the services that take run-time settings from Consul KV.
var schemas = map[string]liveconfig.Validator{
	"gateway": gateway.LiveSchema,
	"counter": counter.LiveSchema,
}

// tasks are the one-shot maintenance commands, each run exactly as the
// service's own subcommand (same configuration variables, same start-up).
var tasks = map[string]struct {
	service, command, help string
	run                    bootstrap.CommandFunc
}{
	"reconcile": {"counter", "reconcile", "compare the counter's Redis with MySQL once and repair the drift (HGP_REDIS_*, HGP_MYSQL_DSN, HGP_KAFKA_BROKERS)", counter.Reconcile},
	"migrate":   {"consumer", "migrate", "apply the MySQL schema migrations (HGP_MYSQL_DSN)", consumer.Migrate},
	"rebuild":   {"analytics", "rebuild", "recompute the analytics windows from Kafka's earliest offset (HGP_REDIS_*, HGP_KAFKA_*)", analytics.Rebuild},
}

const usage = `hgpctl operates a HighGoPress deployment.

Configuration centre (run-time settings shared by every replica, in Consul KV
under ` + liveconfig.Prefix + `<service>; applied without restart, validated
whole by the service's start-up rules; listen addresses and secrets are not
run-time settings):

  hgpctl config keys [SERVICE]      list the run-time settings of SERVICE (or all)
  hgpctl config get SERVICE         print SERVICE's document and its version
  hgpctl config set SERVICE KEY=VALUE... [-unset KEY]...
                                    change some settings: the stored document is
                                    merged with the changes, validated, and written
                                    only if nobody changed it meanwhile
                                    (check-and-set); -replace drops the other keys
  hgpctl config validate SERVICE [FILE|-]
                                    check a document (JSON object of strings)
                                    without writing it; exit status 1 if invalid
  hgpctl config diff SERVICE FILE|-
                                    show what writing the document would change
  hgpctl config put SERVICE FILE|-  validate and write a whole document
  hgpctl config delete SERVICE      drop the document: back to the environment

Maintenance tasks (configured by the same HGP_* variables as the service):

%s
Environment: HGP_CONSUL_ADDR (default 127.0.0.1:8500), HGP_CONSUL_TOKEN.
`

func taskHelp() string {
	names := make([]string, 0, len(tasks))
	for n := range tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "  hgpctl %-25s %s\n", n, tasks[n].help)
	}
	return b.String()
}

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

type env func(string) (string, bool)

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookup env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, usage, taskHelp())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "config":
		err = configCommand(ctx, args[1:], stdin, stdout, lookup)
	default:
		t, ok := tasks[args[0]]
		if !ok {
			err = fmt.Errorf("%w: unknown command %q (hgpctl help lists them)", errUsage, args[0])
			break
		}
		if len(args) > 1 && (args[1] == "-h" || args[1] == "--help") {
			fmt.Fprintf(stdout, "hgpctl %s: %s\n", args[0], t.help)
			return 0
		}
		if len(args) > 1 {
			err = fmt.Errorf("%w: %s takes no arguments (it is configured by HGP_* variables)", errUsage, args[0])
			break
		}
		return bootstrap.RunCommand(t.service, t.command, t.run)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, "hgpctl:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "hgpctl:", err)
		return 1
	}
}
