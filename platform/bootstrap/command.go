package bootstrap

import (
	"context"
	"log/slog"
	"os"

	"github.com/highgopress/highgopress/platform/config"
)

// CommandFunc is a one-shot command of a service (`consumer migrate`,
// `counter reconcile`): it reads its configuration from cfg and returns
// when done.
type CommandFunc func(ctx context.Context, logger *slog.Logger, cfg *config.Reader) error

// MainWith is Main for a service that also has one-shot commands: when the
// first argument names one of commands, that command runs and the process
// exits (status 0 on success, 1 on failure); otherwise the service runs as
// Main runs it.
func MainWith(name string, build BuildFunc, commands map[string]CommandFunc) {
	if len(os.Args) > 1 {
		if cmd, ok := commands[os.Args[1]]; ok {
			os.Exit(RunCommand(name, os.Args[1], cmd))
		}
	}
	Main(name, build)
}

// RunCommand runs a one-shot command with the same start-up as the service
// (Start: HGP_LOG_LEVEL checked, stopped by SIGINT or SIGTERM) and returns
// the exit status. Every configuration problem the command left on the
// Reader, HGP_LOG_LEVEL's included, is an error.
func RunCommand(name, command string, cmd CommandFunc) int {
	ctx, logger, cfg, stop := Start(name)
	defer stop()
	err := cmd(ctx, logger, cfg)
	if err == nil {
		err = cfg.Err()
	}
	if err != nil {
		logger.Error(command+" failed", "err", err)
		return 1
	}
	return 0
}
