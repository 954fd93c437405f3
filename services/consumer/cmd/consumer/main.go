// Command consumer applies user-action events from Kafka to MySQL.
//
//	consumer           run (migrates the schema first unless HGP_CONSUMER_MIGRATE=false)
//	consumer migrate     apply the schema migrations and exit
//	consumer reconcile   compare Redis (HGP_REDIS_ADDR) with MySQL once, repair, exit
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/services/consumer"
)

func main() {
	commands := map[string]func(context.Context, *slog.Logger, *config.Reader) error{
		"migrate":   consumer.Migrate,
		"reconcile": consumer.Reconcile,
	}
	if len(os.Args) > 1 {
		if cmd, ok := commands[os.Args[1]]; ok {
			os.Exit(runCommand(os.Args[1], cmd))
		}
	}
	bootstrap.Main("consumer", consumer.Build)
}

// runCommand runs a one-shot command with the same start-up as the
// service (bootstrap.Start: HGP_LOG_LEVEL checked, stopped by SIGINT or
// SIGTERM) and returns the exit status. The command reports every
// configuration problem, HGP_LOG_LEVEL's included, through cfg.Err.
func runCommand(name string, cmd func(context.Context, *slog.Logger, *config.Reader) error) int {
	ctx, logger, cfg, stop := bootstrap.Start("consumer")
	defer stop()
	err := cmd(ctx, logger, cfg)
	if err == nil {
		err = cfg.Err()
	}
	if err != nil {
		logger.Error(name+" failed", "err", err)
		return 1
	}
	return 0
}
