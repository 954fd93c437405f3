package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	consul "github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// Health checks talk to each server with a real client. Every check is
// bounded by checkTimeout (a start polls again after a failure).
const checkTimeout = 2 * time.Second

func init() {
	// The clients log refused and half-open connections to stderr: while a
	// server starts that is expected, and the check's error says it.
	_ = mysql.SetLogger(discard{})
	redis.SetLogger(discard{})
}

// discard is a logger for the clients' own logs.
type discard struct{}

func (discard) Print(...any)                           {}
func (discard) Printf(context.Context, string, ...any) {}

// redisHealth: PING answers PONG (not LOADING).
func redisHealth(ctx context.Context, c *Config) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{
		Addr: hostPort(c.RedisPort), DialTimeout: checkTimeout, ReadTimeout: checkTimeout, WriteTimeout: checkTimeout,
		MaxRetries: -1, PoolSize: 1, DisableIdentity: true, Protocol: 2,
	})
	defer rdb.Close()
	pong, err := rdb.Ping(ctx).Result()
	if err != nil {
		return fmt.Errorf("redis PING: %w", err)
	}
	if pong != "PONG" {
		return fmt.Errorf("redis PING answered %q", pong)
	}
	return nil
}

// mariadbHealth: a ping as root over the server's own unix socket.
func mariadbHealth(ctx context.Context, c *Config) error {
	db, err := mariadbRoot(c)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("mariadb ping over %s: %w", mariadbSocket(c), err)
	}
	return nil
}

func mariadbRoot(c *Config) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", mariadbSocket(c)
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = checkTimeout, 10*time.Second, 10*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mariadb root connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// mariadbReady creates the application's database and user (as root over
// the socket), then runs a real query as that user over TCP.
func mariadbReady(ctx context.Context, m *mw) error {
	c := &m.cfg
	root, err := mariadbRoot(c)
	if err != nil {
		return err
	}
	defer root.Close()
	host, _ := os.Hostname()
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS `" + mysqlDatabase + "` CHARACTER SET utf8mb4",
		"CREATE USER IF NOT EXISTS '" + mysqlUser + "'@'%' IDENTIFIED BY '" + mysqlPassword + "'",
		"CREATE USER IF NOT EXISTS '" + mysqlUser + "'@'localhost' IDENTIFIED BY '" + mysqlPassword + "'",
		"GRANT ALL PRIVILEGES ON *.* TO '" + mysqlUser + "'@'%'",
		"GRANT ALL PRIVILEGES ON *.* TO '" + mysqlUser + "'@'localhost'",
		"DROP USER IF EXISTS ''@'localhost'",
		"DROP USER IF EXISTS ''@'" + host + "'",
		"DROP USER IF EXISTS 'root'@'" + host + "'",
		"FLUSH PRIVILEGES",
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, s := range stmts {
		if _, err := root.ExecContext(sctx, s); err != nil {
			return fmt.Errorf("mariadb: creating user/database failed: %s: %w", s, err)
		}
	}

	db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s?timeout=5s&readTimeout=10s",
		mysqlUser, mysqlPassword, hostPort(c.MariaDBPort), mysqlDatabase))
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	var one int
	if err := db.QueryRowContext(qctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		return fmt.Errorf("mariadb: query as %s over TCP failed: %v (got %d)", mysqlUser, err, one)
	}
	return nil
}

// kafkaHealth: this run's "Kafka Server started" line in the broker log,
// then a real protocol round trip with kafka-go (the dial negotiates
// ApiVersions; Metadata must list the broker, i.e. it has registered).
func kafkaHealth(ctx context.Context, c *Config) error {
	b, err := os.ReadFile(kafkaServerLog(c))
	if err != nil || !bytes.Contains(b, []byte("Kafka Server started")) {
		return errors.New("kafka: no \"Kafka Server started\" in this run's server.log yet")
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	d := kafka.Dialer{Timeout: checkTimeout, ClientID: "hgp-mw"}
	conn, err := d.DialContext(ctx, "tcp", hostPort(c.KafkaPort))
	if err != nil {
		return fmt.Errorf("kafka dial: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.ApiVersions(); err != nil {
		return fmt.Errorf("kafka ApiVersions: %w", err)
	}
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("kafka Metadata: %w", err)
	}
	if len(brokers) == 0 {
		return errors.New("kafka Metadata: no broker registered yet")
	}
	return nil
}

// consulHealth: the agent knows its raft leader.
func consulHealth(ctx context.Context, c *Config) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	client, err := consul.NewClient(&consul.Config{
		Address: hostPort(c.ConsulHTTPPort), Scheme: "http",
		HttpClient: &http.Client{Timeout: checkTimeout},
	})
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	leader, err := client.Status().LeaderWithQueryOptions((&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul status/leader: %w", err)
	}
	if leader == "" {
		return errors.New("consul: no leader yet")
	}
	return nil
}

// prometheusHealth: GET /-/ready answers 200.
func prometheusHealth(ctx context.Context, c *Config) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(Host, strconv.Itoa(c.PrometheusPort))+"/-/ready", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus /-/ready: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("prometheus /-/ready: %s", resp.Status)
	}
	return nil
}
