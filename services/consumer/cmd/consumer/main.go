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
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/consumer"
)

func main() {
	commands := map[string]func(context.Context, *slog.Logger, *config.Reader) error{
		"migrate":   consumer.Migrate,
		"reconcile": consumer.Reconcile,
	}
	if len(os.Args) > 1 {
		if cmd, ok := commands[os.Args[1]]; ok {
			logger := logging.New("consumer")
			if err := cmd(context.Background(), logger, config.FromEnv()); err != nil {
				logger.Error(os.Args[1]+" failed", "err", err)
				os.Exit(1)
			}
			return
		}
	}
	bootstrap.Main("consumer", consumer.Build)
}
