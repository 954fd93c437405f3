// Command ceiling is the performance yardstick: a minimal net/http server
// answering the same JSON POST a Like sends with a fixed Connect-shaped
// answer. Throughput targets are quoted as a fraction of what hgpload reaches
// against it on the same machine in the same run.
//
//	go run ./loadtest/cmd/ceiling -addr 127.0.0.1:8099
package main

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address (loopback)")
	flag.Parse()
	body := []byte(`{"changed":true,"count":"1"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	slog.Info("ceiling listening", "addr", *addr)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("ceiling stopped", "err", err)
		os.Exit(1)
	}
}
