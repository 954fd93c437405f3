// Command devtoken mints an HS256 token the gateway accepts, for local use:
//
//	go run ./services/gateway/cmd/devtoken -secret "$HGP_JWT_HS256_SECRET" -sub alice
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

func main() {
	secret := flag.String("secret", os.Getenv("HGP_JWT_HS256_SECRET"), "HS256 secret (default $HGP_JWT_HS256_SECRET)")
	sub := flag.String("sub", "dev-user", "subject: the acting user")
	ttl := flag.Duration("ttl", 24*time.Hour, "lifetime")
	iss := flag.String("iss", envOr("HGP_JWT_ISSUER", gateway.DefaultIssuer), "issuer")
	aud := flag.String("aud", envOr("HGP_JWT_AUDIENCE", gateway.DefaultAudience), "audience")
	flag.Parse()
	token, err := auth.Issue([]byte(*secret), *sub, *ttl, *iss, *aud)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(2)
	}
	fmt.Println(token)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
