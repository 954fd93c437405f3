package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// GroupLag returns how many messages of topic the consumer group has not
// committed yet, summed over the partitions.
func GroupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("lag of %s: metadata: %w", group, err)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, tp := range meta.Topics {
		if tp.Error != nil {
			return 0, fmt.Errorf("lag of %s: topic %s: %w", group, topic, tp.Error)
		}
		for _, p := range tp.Partitions {
			parts = append(parts, p.ID)
			reqs = append(reqs, kafka.LastOffsetOf(p.ID))
		}
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("lag of %s: end offsets: %w", group, err)
	}
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
	for _, p := range ends.Topics[topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("lag of %s: partition %d: %w", group, p.Partition, p.Error)
		}
		lag += max(p.LastOffset-have[p.Partition], 0)
	}
	return lag, nil
}
