package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"maps"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-sql-driver/mysql"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
)

// freshDatabase creates a database of its own on the real MariaDB, dropped
// when the test ends, and returns its DSN.
func freshDatabase(t *testing.T) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "hgp_sa_" + hex.EncodeToString(b[:])
	admin := cfg.Clone()
	admin.DBName = ""
	conn, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec("DROP DATABASE IF EXISTS " + name)
		_ = conn.Close()
	})
	if _, err := conn.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	out := cfg.Clone()
	out.DBName = name
	out.ParseTime = true
	out.MultiStatements = true
	return out.FormatDSN()
}

// TestAPIStatsReachMySQL: the gateway's API call statistics travel as
// API_CALL events through a real Kafka broker to the consumer, which adds
// them to api_call_counts in a real MariaDB, per procedure and code,
// exactly (event ids deduplicate a flush published twice).
func TestAPIStatsReachMySQL(t *testing.T) {
	dsn := freshDatabase(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	url, mint := startMultiService(t, map[string]string{
		"HGP_KAFKA_BROKERS":           testenv.KafkaBrokers(t),
		"HGP_KAFKA_TOPIC":             "hgp-sa-apistats-" + suffix,
		"HGP_KAFKA_GROUP":             "hgp-sa-apistats-" + suffix,
		"HGP_KAFKA_PARTITIONS":        "2",
		"HGP_MYSQL_DSN":               dsn,
		"HGP_CONSUMER_ADDR":           "127.0.0.1:0",
		"HGP_APISTATS_FLUSH_INTERVAL": "200ms",
	})
	ctx := context.Background()
	counters := counterv1connect.NewCounterServiceClient(server.NewH2CClient(), url)
	item := []*counterv1.ItemRef{{Namespace: "article", Id: "apistats-" + suffix}}
	want := map[[2]string]int64{}
	for range 5 {
		if _, err := counters.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: item})); err != nil {
			t.Fatalf("GetCounts: %v", err)
		}
	}
	want[[2]string{counterv1connect.CounterServiceGetCountsProcedure, "ok"}] = 5
	for range 3 {
		_, err := counters.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item[0]}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("Like without a token: %v", err)
		}
	}
	want[[2]string{counterv1connect.CounterServiceLikeProcedure, "unauthenticated"}] = 3
	if _, err := counters.Like(ctx, withToken(&counterv1.LikeRequest{Item: item[0]}, mint("stats-user"))); err != nil {
		t.Fatalf("Like: %v", err)
	}
	want[[2]string{counterv1connect.CounterServiceLikeProcedure, "ok"}] = 1

	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	read := func() (map[[2]string]int64, error) {
		rows, err := db.QueryContext(ctx, "SELECT procedure_name, code, calls FROM api_call_counts")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		got := map[[2]string]int64{}
		for rows.Next() {
			var proc, code string
			var calls int64
			if err := rows.Scan(&proc, &code, &calls); err != nil {
				return nil, err
			}
			got[[2]string{proc, code}] = calls
		}
		return got, rows.Err()
	}
	testenv.EventuallyNoError(t, 60*time.Second, "API statistics in MySQL", func() error {
		got, err := read()
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("api_call_counts = %v, want %v", got, want)
		}
		return nil
	})
}
