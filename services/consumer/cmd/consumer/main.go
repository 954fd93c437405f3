// Command consumer applies user-action events from Kafka to MySQL.
//
//	consumer           run (migrates the schema first unless HGP_CONSUMER_MIGRATE=false)
//	consumer migrate   apply the schema migrations and exit
package main

import (
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/services/consumer"
)

func main() {
	bootstrap.MainWith("consumer", consumer.Build, map[string]bootstrap.CommandFunc{
		"migrate": consumer.Migrate,
	})
}
