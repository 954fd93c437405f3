package counter_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/highgopress/highgopress/gen/highgopress/events/v1"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/counter/outbox"
	"github.com/highgopress/highgopress/services/counter/relay"
)

// counterProcess is a real counter command of this test.
type counterProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *counterProcess) kill9(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// TestKill9RelayResumesOrIsClaimed runs real counter processes whose relay
// holds outbox entries it could not hand to Kafka (its brokers are a
// closed port) and kills them with SIGKILL:
//   - restarted with the same identity (same listen address), the relay
//     resumes its own pending entries at once, long before the heartbeat
//     or the claim idle time could have freed them, and sends each once;
//   - another instance leaves a live relay's pending entries alone (its
//     liveness key is refreshed although its Kafka writes keep failing);
//   - it takes a dead relay's entries within a few seconds of its liveness
//     key expiring (claim idle time an hour away), and sends each once.
func TestKill9RelayResumesOrIsClaimed(t *testing.T) {
	rdb := realRedis(t)
	ctx := context.Background()
	brokers := strings.Split(testenv.KafkaBrokers(t), ",")
	topic := fmt.Sprintf("hgp-t-kill-%d", time.Now().UnixNano())
	{
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := events.EnsureTopic(c, brokers, topic, 3); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})

	bin := filepath.Join(t.TempDir(), "counter")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/counter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(addr, kafkaBrokers, heartbeat string) *counterProcess {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(),
			"HGP_IDENTITY_SECRET="+secret,
			"HGP_COUNTER_ADDR="+addr,
			"HGP_REDIS_ADDR="+testenv.RedisAddr(t),
			"HGP_REDIS_DB="+strconv.Itoa(testDB),
			"HGP_KAFKA_BROKERS="+kafkaBrokers,
			"HGP_KAFKA_TOPIC="+topic,
			"HGP_RELAY_HEARTBEAT_TTL="+heartbeat,
			"HGP_RELAY_CLAIM_IDLE=1h",
			"HGP_CONSUL_ADDR=",
			"HGP_METRICS_ADDR=",
			"HGP_LOG_LEVEL=error",
		)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &counterProcess{cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.done) }()
		t.Cleanup(func() { p.kill9(t) })
		return p
	}
	// add appends n entries in one MULTI: a relay's read sees none or all
	// of them. Appended one by one, a relay that starts reading meanwhile
	// takes the first few, and then, its Kafka unreachable, retries that
	// batch for ever without reading the rest: it would never hold all n.
	add := func(n int) {
		t.Helper()
		pipe := rdb.TxPipeline()
		for i := range n {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: outbox.Stream, Values: map[string]any{
				"k": "like", "u": "u" + strconv.Itoa(i), "ns": "kill", "id": "a" + strconv.Itoa(i%3), "d": "1",
			}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pending := func(consumer string) int {
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: outbox.Stream, Group: outbox.Group, Start: "-", End: "+", Count: 10_000, Consumer: consumer,
		}).Result()
		if err != nil {
			return -1
		}
		return len(p)
	}
	// holds says why consumer does not hold exactly want entries yet.
	holds := func(consumer string, want int) error {
		if got := pending(consumer); got != want {
			cs, err := rdb.XInfoConsumers(ctx, outbox.Stream, outbox.Group).Result()
			return fmt.Errorf("%s holds %d of %d; outbox length %d; consumers %+v (%v)",
				consumer, got, want, rdb.XLen(ctx, outbox.Stream).Val(), cs, err)
		}
		return nil
	}
	// blockedReads says whether a connection to this package's database is
	// still blocked in XREADGROUP. Redis notices a killed client's closed
	// connection only when it handles that connection's event; an append
	// handled before that serves the blocked read, for the dead consumer.
	blockedReads := func() error {
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					f[k] = v
				}
			}
			if f["db"] == strconv.Itoa(testDB) && f["cmd"] == "xreadgroup" && strings.Contains(f["flags"], "b") {
				return fmt.Errorf("client %s is blocked in XREADGROUP", f["addr"])
			}
		}
		return nil
	}
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: "verify-" + topic, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer reader.Close()
	// readN reads n messages and returns their distinct event ids.
	readN := func(n int) map[string]int {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		seen := map[string]int{}
		for range n {
			m, err := reader.FetchMessage(rctx)
			if err != nil {
				t.Fatalf("read %s: got %d of %d: %v", topic, len(seen), n, err)
			}
			ev := &eventsv1.Event{}
			if err := proto.Unmarshal(m.Value, ev); err != nil {
				t.Fatal(err)
			}
			seen[ev.GetEventId()]++
		}
		return seen
	}
	noBroker := testenv.ClosedAddr(t)
	const n = 60

	// 1. Same identity: a restart resumes its own pending entries at once.
	addrA := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	nameA := relay.Identity("", addrA)
	a := run(addrA, noBroker, "30s")
	add(n)
	testenv.EventuallyNoError(t, waitTimeout, "the first counter's relay to hold every entry", func() error { return holds(nameA, n) })
	a.kill9(t)
	began := time.Now()
	a2 := run(addrA, strings.Join(brokers, ","), "30s")
	seen := readN(n)
	took := time.Since(began)
	if len(seen) != n {
		t.Fatalf("restart relayed %d distinct entries; want %d", len(seen), n)
	}
	// Neither the 30 s heartbeat nor the 1 h claim idle time freed them.
	if took > 20*time.Second {
		t.Fatalf("a restart with the same identity relayed its entries after %s; want at once", took)
	}
	t.Logf("restarted relay %s resumed %d pending entries in %s", nameA, n, took)

	// 2. Another identity: a live relay's entries stay its own; once it is
	// dead, another instance claims them when its liveness key expired.
	addrB := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	nameB := relay.Identity("", addrB)
	// The restarted A holds nothing now; it goes (and so does its blocked
	// read), so that B is the only relay reading the next entries.
	testenv.EventuallyNoError(t, waitTimeout, "the restarted relay to acknowledge", func() error { return holds(nameA, 0) })
	a2.kill9(t)
	testenv.EventuallyNoError(t, waitTimeout, "Redis to drop the killed relay's blocked read", blockedReads)
	b := run(addrB, noBroker, "3s")
	add(n)
	testenv.EventuallyNoError(t, waitTimeout, "the second counter's relay to hold the new entries", func() error { return holds(nameB, n) })
	// C, with a working Kafka, looks for dead relays every 0.5 s (its
	// heartbeat is 1 s): B is alive (its key, 3 s, is refreshed every
	// second while its Kafka writes fail), so C must leave its entries.
	addrC := addrB
	for addrC == addrB {
		addrC = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	}
	nameC := relay.Identity("", addrC)
	run(addrC, strings.Join(brokers, ","), "1s")
	testenv.EventuallyNoError(t, waitTimeout, "the third counter's relay to join the group", func() error {
		cs, err := rdb.XInfoConsumers(ctx, outbox.Stream, outbox.Group).Result()
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == nameC {
				return nil
			}
		}
		return fmt.Errorf("consumers %+v", cs)
	})
	watch := time.NewTicker(20 * time.Millisecond) // polling interval of the observation window
	defer watch.Stop()
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); <-watch.C {
		select {
		case <-b.done:
			t.Fatalf("the second counter exited while its relay held entries")
		default:
		}
		if err := holds(nameB, n); err != nil {
			t.Fatalf("a live relay's entries were taken: %v", err)
		}
	}
	b.kill9(t)
	began = time.Now()
	seen = readN(n)
	took = time.Since(began)
	if len(seen) != n {
		t.Fatalf("relayed %d distinct entries of the dead relay; want %d", len(seen), n)
	}
	if took > 20*time.Second {
		t.Fatalf("a dead relay's entries were claimed after %s; want a few seconds (its heartbeat 3s)", took)
	}
	t.Logf("dead relay %s: entries relayed by %s %s after the kill", nameB, nameC, took)
	testenv.EventuallyNoError(t, waitTimeout, "the outbox to drain", func() error {
		if l := rdb.XLen(ctx, outbox.Stream).Val(); l != 0 {
			return fmt.Errorf("outbox holds %d entries", l)
		}
		return nil
	})
	// Normal case: nothing was sent twice (the topic holds exactly 2n).
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := events.EndOffsets(lctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, end := range ends {
		total += end
	}
	if total != 2*n {
		t.Fatalf("topic holds %d messages; want %d, each entry once", total, 2*n)
	}
}
