// Command hgpctl operates a HighGoPress deployment: the configuration centre
// (run-time settings in Consul KV) and the one-shot maintenance tasks of the
// services.
//
//	hgpctl config keys [SERVICE]                  run-time settings of each service
//	hgpctl config get SERVICE                     the document in force, with its version
//	hgpctl config set SERVICE KEY=VALUE... [-unset KEY]...
//	hgpctl config validate SERVICE [FILE|-]
//	hgpctl config diff SERVICE FILE|-
//	hgpctl reconcile | migrate | rebuild
//
// Run `hgpctl help` for the details.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
