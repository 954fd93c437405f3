package events

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// GroupOffsets returns the end offset and the consumer group's committed
// offset (0 when none) of every partition of topic.
func GroupOffsets(ctx context.Context, brokers []string, group, topic string) (ends, committed map[int]int64, err error) {
	ends, err = EndOffsets(ctx, brokers, topic)
	if err != nil {
		return nil, nil, err
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, nil, fmt.Errorf("committed offsets: %w", err)
	}
	if res.Error != nil {
		return nil, nil, fmt.Errorf("committed offsets: %w", res.Error)
	}
	committed = make(map[int]int64, len(parts))
	for _, p := range res.Topics[topic] {
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	return ends, committed, nil
}

// GroupLag returns how many messages of topic the consumer group has not
// committed yet, summed over the partitions.
func GroupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	ends, committed, err := GroupOffsets(ctx, brokers, group, topic)
	if err != nil {
		return 0, fmt.Errorf("lag of %s: %w", group, err)
	}
	var lag int64
	for p, end := range ends {
		lag += max(end-committed[p], 0)
	}
	return lag, nil
}
