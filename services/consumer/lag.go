package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/highgopress/highgopress/services/counter/relay"
)

// GroupLag returns how many messages of topic the consumer group has not
// committed yet, summed over the partitions.
func GroupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	ends, err := relay.EndOffsets(ctx, brokers, topic)
	if err != nil {
		return 0, fmt.Errorf("lag of %s: %w", group, err)
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("lag of %s: committed offsets: %w", group, err)
	}
	if committed.Error != nil {
		return 0, fmt.Errorf("lag of %s: committed offsets: %w", group, committed.Error)
	}
	have := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		have[p.Partition] = max(p.CommittedOffset, 0)
	}
	var lag int64
	for p, end := range ends {
		lag += max(end-have[p], 0)
	}
	return lag, nil
}
