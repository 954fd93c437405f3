package counter_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/rpctest"
)

// usedMemory is Redis' used_memory.
func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

// memoryUsage sums MEMORY USAGE of the keys matching pattern.
func memoryUsage(b *testing.B, rdb *redis.Client, pattern string) (keys int, bytes int64) {
	b.Helper()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for key := range iter.Vals(ctx) {
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		keys++
		bytes += n
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return keys, bytes
}

// BenchmarkRedisMemory measures the Redis memory the counter's state costs:
// per item, per like and per follow (MEMORY USAGE of the keys, and
// used_memory before and after), for docs/scaling.md. Run with
// -run '^$' -bench RedisMemory -benchtime 1x; each iteration writes the
// same fixed history on a flushed database.
func BenchmarkRedisMemory(b *testing.B) {
	const items, likersPerItem, users, followsPerUser = 2000, 25, 2000, 10
	for range b.N {
		e := newEnv(b)
		cs := e.counters(rpctest.Protocols[1])
		fs := e.follows(rpctest.Protocols[1])
		ctx := context.Background()
		before := usedMemory(b, e.rdb)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range items {
			for u := range likersPerItem {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					user := fmt.Sprintf("u%05d", (i*7+u*131)%users)
					if _, err := cs.Like(ctx, as(e, user, &counterv1.LikeRequest{Item: ref("article", fmt.Sprintf("item-%06d", i))})); err != nil {
						b.Error(err)
					}
				})
			}
		}
		for u := range users {
			for f := 1; f <= followsPerUser; f++ {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if _, err := fs.Follow(ctx, as(e, fmt.Sprintf("u%05d", u), &counterv1.FollowRequest{UserId: fmt.Sprintf("u%05d", (u+f*97)%users)})); err != nil {
						b.Error(err)
					}
				})
			}
		}
		wg.Wait()
		total := usedMemory(b, e.rdb) - before
		likes := float64(items * likersPerItem)
		follows := float64(users * followsPerUser)
		_, counts := memoryUsage(b, e.rdb, "hgp:c:*")
		_, likers := memoryUsage(b, e.rdb, "hgp:lk:*")
		_, fg := memoryUsage(b, e.rdb, "hgp:fg:*")
		_, fr := memoryUsage(b, e.rdb, "hgp:fr:*")
		_, uh := memoryUsage(b, e.rdb, "hgp:u:*")
		_, outbox := memoryUsage(b, e.rdb, "hgp:outbox")
		b.ReportMetric(float64(counts)/items, "B/item-counts")
		b.ReportMetric(float64(likers)/likes, "B/like")
		b.ReportMetric(float64(fg+fr)/follows, "B/follow")
		b.ReportMetric(float64(uh)/users, "B/user-counts")
		b.ReportMetric(float64(outbox)/(likes+follows), "B/outbox-entry")
		b.ReportMetric(float64(total)/(likes+follows), "B/write-used_memory")
	}
}
