// Command hgpload is HighGoPress's own load generator: JSON POSTs exactly as
// curl or k6 send them, closed-loop (fixed concurrency) or open-loop
// (constant arrival rate, latency measured from each request's scheduled
// start so queueing is not hidden). It only targets loopback addresses, and
// every run is bounded in time and count.
//
//	go run ./loadtest/cmd/hgpload -url http://127.0.0.1:8080 -secret "$HGP_JWT_HS256_SECRET" \
//	    -op like -concurrency 64 -duration 10s
//	go run ./loadtest/cmd/hgpload -url http://127.0.0.1:8080 -op getcounts -rate 2000 -duration 10s
//	go run ./loadtest/cmd/hgpload -url http://127.0.0.1:8080 -op topitems -rate 1000 -duration 10s
//	go run ./loadtest/cmd/hgpload -url http://127.0.0.1:8080 -secret "$HGP_JWT_HS256_SECRET" \
//	    -op watchcounts -watchers 4 -rate 100 -duration 10s   # like → WatchCounts latency
//	go run ./loadtest/cmd/hgpload -url http://127.0.0.1:8080 -secret "$HGP_JWT_HS256_SECRET" \
//	    -op watchtop -watchers 4 -rate 20 -duration 10s       # like → WatchTopItems (hour) latency
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	var c Config
	flag.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "gateway (or ceiling) base URL; loopback only")
	flag.StringVar(&c.Op, "op", "like", "like | getcounts | mixed | ceiling | topitems | watchcounts | watchtop")
	flag.IntVar(&c.Rate, "rate", 0, "open-loop arrivals per second (0: closed loop)")
	flag.IntVar(&c.Concurrency, "concurrency", 32, "closed-loop workers / open-loop max in flight")
	flag.DurationVar(&c.Duration, "duration", 10*time.Second, "run length (at most 10m)")
	flag.IntVar(&c.MaxRequests, "max-requests", 5_000_000, "stop after this many requests")
	flag.IntVar(&c.Users, "users", 1000, "distinct users (tokens)")
	flag.IntVar(&c.Items, "items", 10_000, "distinct items")
	flag.StringVar(&c.Secret, "secret", os.Getenv("HGP_JWT_HS256_SECRET"), "HS256 secret to mint user tokens")
	flag.StringVar(&c.Label, "label", "", "label for the result line")
	flag.IntVar(&c.Batch, "batch", 1, "items per GetCounts")
	flag.StringVar(&c.Prefix, "prefix", "load-", "item id prefix (a new prefix: items never touched before)")
	flag.Float64Var(&c.Zipf, "zipf", 0, "Zipf exponent (> 1) for item popularity; 0: uniform")
	flag.StringVar(&c.Namespace, "namespace", "", "watchcounts/watchtop: namespace of the watched items (default: a fresh one)")
	flag.IntVar(&c.Watchers, "watchers", 1, "watchcounts/watchtop: streams (watchcounts: 100 items each)")
	out := flag.String("out", "", "append the result as a JSON line to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Run(ctx, c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hgpload:", err)
		os.Exit(2)
	}
	fmt.Println(res.String())
	if *out != "" {
		if err := appendJSON(*out, res); err != nil {
			fmt.Fprintln(os.Stderr, "hgpload:", err)
			os.Exit(1)
		}
	}
}

func appendJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	b, err := json.Marshal(v)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	return errors.Join(err, f.Close())
}
