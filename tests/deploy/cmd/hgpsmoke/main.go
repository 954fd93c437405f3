// Command hgpsmoke is the chart's `helm test`: it mints a short-lived HS256
// token the gateway accepts, likes an item through the gateway and reads the
// count back, and exits non-zero unless the like is visible.
//
//	HGP_SMOKE_GATEWAY_URL  gateway base URL, e.g. http://release-highgopress-gateway:8080
//	HGP_JWT_HS256_SECRET   the gateway's HS256 key
//	HGP_JWT_ISSUER, HGP_JWT_AUDIENCE (defaults highgopress, highgopress-api)
package main

import (
	"context"
	"os"
	"time"

	"github.com/highgopress/highgopress/tests/deploy/smoke"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	os.Exit(smoke.Main(ctx, os.Getenv, os.Stdout, os.Stderr))
}
