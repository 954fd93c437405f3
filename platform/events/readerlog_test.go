package events_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/platform/events"
)

// TestReaderIdlePollTimeoutIsNotAWarning: the kafka-go reader reports a
// fetch that outlived its deadline (an idle long poll on a loaded machine)
// through its error logger; that is logged at debug level, while other
// reader errors stay warnings. The timeout is a real one, from a read on a
// TCP connection nobody writes to, formatted as kafka-go formats it.
func TestReaderIdlePollTimeoutIsNotAWarning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, timeout := conn.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(timeout, &ne) || !ne.Timeout() {
		t.Fatalf("read error %v is not a timeout", timeout)
	}

	var out bytes.Buffer
	log := events.ReaderErrorLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	const format = "the kafka reader got an unknown error reading partition %d of %s at offset %d: %s"
	log.Printf(format, 1, "user-actions", 0, timeout)
	if out.Len() != 0 {
		t.Fatalf("an idle poll timeout was logged at info level or above:\n%s", out.String())
	}
	log.Printf("Failed to sync group %s: %v", "highgopress-consumer", kafka.RebalanceInProgress)
	if strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "level=INFO") {
		t.Fatalf("a group rebalancing was not logged at info level:\n%s", out.String())
	}
	out.Reset()
	log.Printf(format, 1, "user-actions", 0, errors.New("connection reset by peer"))
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "connection reset by peer") {
		t.Fatalf("a reader error was not logged as a warning:\n%s", out.String())
	}
}
