// Command standalone runs every HighGoPress service in one process on
// embedded middleware: the quickest way to try the API. The services use the
// same code paths as in production; only the servers they talk to (Redis,
// Kafka and MySQL) are in-process substitutes (miniredis, kfake,
// go-mysql-server), which keep everything in memory: the data is gone when
// the process stops.
//
//	go run ./services/standalone
//
// Every HGP_* variable the services read can still be set to override the
// defaults chosen here (for example HGP_GATEWAY_ADDR=127.0.0.1:9090).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/highgopress/highgopress/platform/bootstrap"
)

func main() {
	ctx, logger, cfg, stop := bootstrap.Start("standalone")
	defer stop()
	err := cfg.Err()
	if err == nil {
		err = run(ctx, logger, os.Stdout, nil)
	}
	if err != nil {
		logger.Error("standalone stopped with error", "err", err)
		os.Exit(1)
	}
}

// EphemeralNotice is the banner's statement that nothing survives the
// process: the embedded Redis (miniredis), Kafka (kfake) and MySQL
// (go-mysql-server's memory engine) keep their data in memory only.
const EphemeralNotice = `Data is kept in memory only: every like, follow and count is lost when this
process stops. For data that lasts, run the services on Redis, Kafka and MySQL.`

// banner prints how to use the running stack.
func banner(w io.Writer, r Ready) {
	fmt.Fprintf(w, `
HighGoPress is running (standalone mode, embedded middleware).

  page:      %[1]s/#token=%[3]s
             (the live page, signed in as the dev user)
  gateway:   %[1]s   (Connect, gRPC and gRPC-Web)
  dev user:  %[2]s
  token:     %[3]s

Try it:

  export TOKEN=%[3]s
  curl -sS -X POST %[1]s/highgopress.counter.v1.CounterService/Like \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"item":{"namespace":"article","id":"hello-world"}}'

  curl -sS -X POST %[1]s/highgopress.counter.v1.CounterService/GetCounts \
    -H 'Content-Type: application/json' \
    -d '{"items":[{"namespace":"article","id":"hello-world"}]}'

The token is valid for 24 hours. Stop with Ctrl-C.

%[4]s

`, r.GatewayURL, r.DevUser, r.Token, EphemeralNotice)
}
