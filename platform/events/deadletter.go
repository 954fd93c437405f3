package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Dead-letter headers added to a message copied to the dead-letter topic.
const (
	// HeaderDLQReason says why the message was dead-lettered.
	HeaderDLQReason = "hgp-dlq-reason"
	// HeaderDLQSource is "<topic>/<partition>/<offset>" of the original.
	HeaderDLQSource = "hgp-dlq-source"
)

// DeadLetter returns the copy of m for the dead-letter topic: its key,
// value and headers, plus the reason and the source position.
func DeadLetter(m kafka.Message, reason string) kafka.Message {
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderDLQSource, Value: []byte(m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10))},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}
}

// NewDLQWriter returns the writer of a dead-letter topic: synchronous,
// acks from all in-sync replicas.
func NewDLQWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
	}
}

// ReaderErrorLogger logs a kafka-go reader's errors as warnings, except
// network timeouts: kafka-go gives a fetch only MaxWait (its broker-side
// wait plus a quarter) to come back, so on a loaded machine an idle
// partition's long poll times out now and then and the reader reconnects.
// That is idle polling, not a fault: it is logged at debug level. A group
// rebalancing (members joining at start-up, a member leaving) is how a
// consumer group works, not a fault either: it is logged at info level.
func ReaderErrorLogger(logger *slog.Logger) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		level := slog.LevelWarn
		for _, a := range args {
			err, ok := a.(error)
			if !ok {
				continue
			}
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
				level = slog.LevelDebug
			case errors.Is(err, kafka.RebalanceInProgress):
				level = slog.LevelInfo
			}
		}
		logger.Log(context.Background(), level, "kafka reader: "+fmt.Sprintf(msg, args...))
	})
}
