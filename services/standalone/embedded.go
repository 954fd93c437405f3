package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

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
	// stopClock ends the goroutine that runs the embedded Redis's clock.
	stopClock func()
	kafka     *kfake.Cluster
	mysql     *gmsserver.Server

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
	e.stopClock = runRedisClock(e.redis, redisClockTick)

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

// redisClockTick is how often the embedded Redis's TTLs are advanced to
// the wall clock: keys expire at most this late.
const redisClockTick = 50 * time.Millisecond

// runRedisClock makes keys of m expire in real time, as they do in Redis:
// miniredis only counts TTLs down when told to (FastForward), so without
// this the gateway's rate-limit windows (1 s keys) never ended and a
// budget spent once was spent for the life of the process. Every tick
// advances the TTLs by the time that really passed. (miniredis's ClockTTL
// does the same on every command, but each advance sorts every key of the
// database: once per tick, not once per command.) It returns a function
// that stops the clock.
func runRedisClock(m *miniredis.Miniredis, tick time.Duration) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// Close stops every embedded server.
func (e *embedded) Close() error {
	var errs []error
	if e.stopClock != nil {
		e.stopClock()
	}
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
