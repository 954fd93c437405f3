package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/alicebob/miniredis/v2"
	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	gmsserver "github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"
)

// embedded holds the in-process substitutes for Redis, Kafka and MySQL. They
// speak the real wire protocols on loopback ports, so the services use their
// ordinary clients.
type embedded struct {
	redis *miniredis.Miniredis
	kafka *kfake.Cluster
	mysql *gmsserver.Server

	RedisAddr    string
	KafkaBrokers string
	MySQLDSN     string
}

// mysqlDatabase is the schema the consumer migrates at start-up.
const mysqlDatabase = "highgopress"

// kafkaPartitions of the embedded topics.
const kafkaPartitions = 3

func startEmbedded(logger *slog.Logger, topics ...string) (*embedded, error) {
	e := &embedded{redis: miniredis.NewMiniRedis()}
	if err := e.redis.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	e.RedisAddr = e.redis.Addr()

	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, topics...),
		kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(kafkaPartitions))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	e.kafka = kafka
	e.KafkaBrokers = kafka.ListenAddrs()[0]

	// go-mysql-server logs through logrus; keep only its warnings.
	logrus.SetLevel(logrus.WarnLevel)
	db := memory.NewDatabase(mysqlDatabase)
	db.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(db)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("start embedded mysql: %w", err)
	}
	srv, err := gmsserver.NewServer(gmsserver.Config{Protocol: "tcp", Listener: ln},
		sqle.NewDefault(pro), sql.NewContext, memory.NewSessionBuilder(pro), nil)
	if err != nil {
		ln.Close()
		e.Close()
		return nil, fmt.Errorf("start embedded mysql: %w", err)
	}
	e.mysql = srv
	go func() {
		if err := srv.Start(); err != nil {
			logger.Error("embedded mysql stopped", "err", err)
		}
	}()
	e.MySQLDSN = fmt.Sprintf("root@tcp(%s)/%s?parseTime=true&multiStatements=true", ln.Addr(), mysqlDatabase)
	logger.Info("embedded middleware started", "redis", e.RedisAddr, "kafka", e.KafkaBrokers, "mysql", ln.Addr().String())
	return e, nil
}

// Close stops every embedded server.
func (e *embedded) Close() error {
	var errs []error
	if e.mysql != nil {
		errs = append(errs, e.mysql.Close())
	}
	if e.kafka != nil {
		e.kafka.Close()
	}
	if e.redis != nil {
		e.redis.Close()
	}
	return errors.Join(errs...)
}
