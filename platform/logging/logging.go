// Package logging builds the JSON slog logger every service uses.
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger writing to stderr at the level named by
// HGP_LOG_LEVEL (debug, info, warn, error; default info), tagged with the
// service name.
func New(service string) *slog.Logger {
	return NewWriter(os.Stderr, service, os.Getenv("HGP_LOG_LEVEL"))
}

// NewWriter is New with an explicit writer and level.
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
