// Package logging builds the JSON slog logger every service uses.
package logging

import (
	"io"
	"log/slog"
	"strings"
)

// NewWriter returns a JSON logger writing to w at level (debug, info,
// warn, error; anything else: info), tagged with the service name. The
// level comes from the service's configuration (HGP_LOG_LEVEL, read and
// checked by bootstrap.Start).
func NewWriter(w io.Writer, service, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", service)
}

// Discard returns a logger that drops everything, for tests and benchmarks.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
