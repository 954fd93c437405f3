package kafkasink_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/apistats"
	"github.com/highgopress/highgopress/services/gateway/apistats/kafkasink"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

type fakeWriter struct {
	msgs []kafka.Message
	err  error
}

func (f *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	if f.err != nil {
		return f.err
	}
	f.msgs = append(f.msgs, msgs...)
	return nil
}

func stat(id, proc, code string, n int64) apistats.Stat {
	end := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return apistats.Stat{ID: id, Procedure: proc, Code: code, Count: n, Start: end.Add(-10 * time.Second), End: end}
}

func decode(t *testing.T, m kafka.Message) *eventsv1.Event {
	t.Helper()
	ev := &eventsv1.Event{}
	if err := proto.Unmarshal(m.Value, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestEventMapping: each stat becomes one API_CALL event keyed by
// procedure; a failed write is returned so the recorder retries.
func TestEventMapping(t *testing.T) {
	w := &fakeWriter{}
	s := kafkasink.New(logging.Discard(), w)
	stats := []apistats.Stat{
		stat("gw1-1-ok-/p.v1.S/Like", "/p.v1.S/Like", "ok", 7),
		stat("gw1-1-unavailable-/p.v1.S/Like", "/p.v1.S/Like", "unavailable", 2),
	}
	if err := s.Publish(context.Background(), stats); err != nil {
		t.Fatal(err)
	}
	if len(w.msgs) != 2 {
		t.Fatalf("%d messages", len(w.msgs))
	}
	for i, m := range w.msgs {
		ev := decode(t, m)
		if string(m.Key) != "api//p.v1.S/Like" || len(m.Headers) != 1 || m.Headers[0].Key != events.HeaderEventType ||
			string(m.Headers[0].Value) != "KIND_API_CALL" {
			t.Fatalf("message %d: key %q headers %v", i, m.Key, m.Headers)
		}
		if ev.GetKind() != eventsv1.Kind_KIND_API_CALL || ev.GetEventId() != stats[i].ID || ev.GetProcedure() != stats[i].Procedure ||
			ev.GetCode() != stats[i].Code || ev.GetDelta() != stats[i].Count || !ev.GetTime().AsTime().Equal(stats[i].End) {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	w.err = errors.New("broker down")
	if err := s.Publish(context.Background(), stats); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("Publish with a failing writer: %v", err)
	}
	if err := s.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kafkasink.Message(apistats.Stat{}); err == nil {
		t.Fatal("a stat without id was accepted")
	}
}

// TestRealKafka: published stats arrive on a real broker, acknowledged by
// all replicas, decodable by the analytics consumer.
func TestRealKafka(t *testing.T) {
	brokers := strings.Split(testenv.KafkaBrokers(t), ",")
	topic := fmt.Sprintf("hgp-gwtest-apistats-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	if _, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	w := events.NewWriter(brokers, topic)
	defer w.Close()
	s := kafkasink.New(logging.Discard(), w)
	stats := []apistats.Stat{
		stat("a-1-ok-/p.v1.S/Like", "/p.v1.S/Like", "ok", 40),
		stat("a-1-ok-/p.v1.S/GetCounts", "/p.v1.S/GetCounts", "ok", 12),
		stat("a-1-resource_exhausted-/p.v1.S/Like", "/p.v1.S/Like", "resource_exhausted", 3),
	}
	// The topic may take a moment to have leaders: the recorder would
	// retry the same batch at its next flush; so does this loop.
	testenv.EventuallyNoError(t, 10*time.Second, "a published batch", func() error { return s.Publish(ctx, stats) })
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: topic + "-check", StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	got := map[string]*eventsv1.Event{}
	for len(got) < len(stats) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read after %d events: %v", len(got), err)
		}
		ev := decode(t, m)
		if string(m.Key) != "api/"+ev.GetProcedure() {
			t.Fatalf("key %q for %v", m.Key, ev)
		}
		got[ev.GetEventId()] = ev
	}
	for _, st := range stats {
		ev := got[st.ID]
		if ev == nil || ev.GetDelta() != st.Count || ev.GetCode() != st.Code || ev.GetKind() != eventsv1.Kind_KIND_API_CALL {
			t.Fatalf("stat %+v arrived as %v", st, ev)
		}
	}
}

// TestGatewayPublishesToKafka: a gateway configured with HGP_KAFKA_BROKERS
// counts its calls and, at the latest when it shuts down, publishes them as
// API_CALL events on HGP_KAFKA_TOPIC.
func TestGatewayPublishesToKafka(t *testing.T) {
	brokersCSV := testenv.KafkaBrokers(t)
	brokers := strings.Split(brokersCSV, ",")
	topic := fmt.Sprintf("hgp-gwtest-apicalls-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	if _, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	// A backend answering every unary Connect call with an empty message.
	backend, _ := rpctest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	const secret = "hs256-secret-for-tests-only-0123456789"
	r := config.FromMap(map[string]string{
		"HGP_GATEWAY_COUNTER_URLS": backend,
		"HGP_IDENTITY_SECRET":      "identity-secret-shared-by-gateway-and-backends",
		"HGP_JWT_HS256_SECRET":     secret,
		"HGP_KAFKA_BROKERS":        brokersCSV,
		"HGP_KAFKA_TOPIC":          topic,
	})
	comp, err := gateway.Build(ctx, logging.Discard(), r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	comp.Listener = ln
	gw := testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logging.Discard(), comp) })

	tok, err := auth.Issue([]byte(secret), "kafka-user", time.Minute, gateway.DefaultIssuer, gateway.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	h2c := server.NewH2CClient()
	defer h2c.CloseIdleConnections()
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/highgopress.counter.v1.CounterService/Like",
			strings.NewReader(`{"item":{"namespace":"article","id":"k"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: HTTP %d", i, resp.StatusCode)
		}
	}
	if err := gw.Stop(t); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}

	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: topic + "-check", StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer rd.Close()
	// The count may be split over several flushes (the periodic one when
	// the gateway was told to stop, the last one after it drained).
	var total int64
	ids := map[string]bool{}
	for total < 5 {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d calls counted: %v", total, err)
		}
		ev := decode(t, m)
		if ev.GetKind() != eventsv1.Kind_KIND_API_CALL || ev.GetProcedure() != "/highgopress.counter.v1.CounterService/Like" ||
			ev.GetCode() != "ok" || ev.GetEventId() == "" || ids[ev.GetEventId()] {
			t.Fatalf("event %v", ev)
		}
		ids[ev.GetEventId()] = true
		total += ev.GetDelta()
	}
	if total != 5 {
		t.Fatalf("%d calls counted, want 5", total)
	}
}

// TestRecorderEventsPassTheContract: whatever the host name and procedure
// path, every event a recorder flushes is one the consumer accepts (the
// events contract's Decode, the consumer's own check) — ids built from the
// host, pid, clock and path once exceeded its event id limit, and every API
// statistic was dead-lettered.
func TestRecorderEventsPassTheContract(t *testing.T) {
	w := &fakeWriter{}
	long := strings.Repeat("gateway-replica-", 8) // a long pod/host name
	procs := []string{
		"/highgopress.counter.v1.CounterService/GetCounts",
		"/highgopress.counter.v1.FollowService/" + strings.Repeat("M", 200),
		apistats.UnknownProcedure,
	}
	rec := apistats.NewRecorder(logging.Discard(), kafkasink.New(logging.Discard(), w), apistats.Config{FlushInterval: time.Hour},
		apistats.WithInstance(long), apistats.WithKnownProcedures(func(p string) bool { return slices.Contains(procs, p) }))
	for range 2 { // two windows: ids differ between flushes
		for _, p := range procs {
			rec.Record(p, apistats.OK)
			rec.Record(p, connect.CodeResourceExhausted)
		}
		if err := rec.Flush(context.Background()); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
	if len(w.msgs) != 2*2*len(procs) {
		t.Fatalf("%d messages, want %d", len(w.msgs), 2*2*len(procs))
	}
	ids := map[string]bool{}
	for _, m := range w.msgs {
		ev, err := events.Decode(m.Value)
		if err != nil {
			t.Fatalf("message %q refused by the contract: %v", m.Key, err)
		}
		if ids[ev.GetEventId()] {
			t.Fatalf("event id %q used twice", ev.GetEventId())
		}
		ids[ev.GetEventId()] = true
	}
}

// TestRefusedStatDoesNotHoldTheBatch: a stat the events contract refuses is
// dropped and counted; the rest of the batch is published (the recorder
// would otherwise retry the whole batch forever).
func TestRefusedStatDoesNotHoldTheBatch(t *testing.T) {
	w := &fakeWriter{}
	s := kafkasink.New(logging.Discard(), w)
	stats := []apistats.Stat{
		stat("api-1", "/p.v1.S/Like", "ok", 3),
		stat("api-2", "", "ok", 1), // no procedure: refused by the contract
		stat("api-3", "/p.v1.S/GetCounts", "ok", 2),
	}
	if err := s.Publish(context.Background(), stats); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(w.msgs) != 2 || s.Refused() != 1 {
		t.Fatalf("%d messages written, %d refused; want 2 and 1", len(w.msgs), s.Refused())
	}
}
