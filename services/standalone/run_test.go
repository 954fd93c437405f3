package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/testenv"
)

// TestStandaloneServesLikesOverCurlShapedJSON runs the whole standalone
// stack and sends the exact requests the banner tells users to send.
func TestStandaloneServesLikesOverCurlShapedJSON(t *testing.T) {
	t.Setenv("HGP_GATEWAY_ADDR", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan Ready, 1)
	done := make(chan error, 1)
	var banner bytes.Buffer
	go func() { done <- run(ctx, logging.Discard(), &banner, func(r Ready) { readyc <- r }) }()

	var r Ready
	select {
	case r = <-readyc:
	case err := <-done:
		t.Fatalf("standalone stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("standalone not ready within 30s")
	}
	if !strings.Contains(banner.String(), r.Token) || !strings.Contains(banner.String(), "curl") {
		t.Fatalf("banner lacks token or curl line:\n%s", banner.String())
	}

	// Both listeners are bound before ready fires: one request each, no retries.
	post := func(path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, r.GatewayURL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("decode %s: %v", path, err)
		}
		return resp.StatusCode, m
	}
	const like = "/highgopress.counter.v1.CounterService/Like"
	const item = `{"item":{"namespace":"article","id":"hello-world"}}`

	code, m := post(like, r.Token, item)
	if code != 200 || m["changed"] != true || m["count"] != "1" {
		t.Fatalf("first like: %d %v", code, m)
	}
	code, m = post(like, r.Token, item)
	if code != 200 || m["changed"] != nil || m["count"] != "1" {
		t.Fatalf("second like must not move the count: %d %v", code, m)
	}
	code, m = post(like, "", item)
	if code != 401 || m["code"] != "unauthenticated" {
		t.Fatalf("like without token: %d %v", code, m)
	}
	code, m = post("/highgopress.counter.v1.CounterService/GetCounts", "", `{"items":[{"namespace":"article","id":"hello-world"}]}`)
	counts, _ := m["counts"].([]any)
	if code != 200 || len(counts) != 1 || counts[0].(map[string]any)["likes"] != "1" {
		t.Fatalf("GetCounts: %d %v", code, m)
	}

	// The like travels outbox → relay → Kafka (kfake) → consumer → MySQL
	// (go-mysql-server): poll the durable record until it shows up. The
	// budget is for a loaded machine, where the consumer group's first join
	// alone can take tens of seconds; it takes about a second otherwise.
	db, err := sql.Open("mysql", r.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testenv.EventuallyNoError(t, 120*time.Second, "the like persisted to MySQL", func() error {
		var likes int64
		err := db.QueryRow(`SELECT value FROM item_counts WHERE namespace = 'article' AND item_id = 'hello-world' AND metric = 'likes'`).Scan(&likes)
		if err == nil && likes != 1 {
			err = fmt.Errorf("likes = %d, want 1", likes)
		}
		return err
	})
	// The consumer recorded how far it applied the topic, in the like's
	// transaction.
	var marked int64
	if err := db.QueryRow(`SELECT COALESCE(SUM(next_offset), 0) FROM pipeline_offsets WHERE topic = ?`, events.DefaultTopic).Scan(&marked); err != nil || marked < 1 {
		t.Fatalf("pipeline_offsets of %s: %d messages applied, %v", events.DefaultTopic, marked, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("standalone did not shut down within 20s")
	}
}
