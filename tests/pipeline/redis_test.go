package pipeline_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// redisState reads the counter's real-time view (key layout of
// services/counter/redisstore/keys.go) from rdb, a database that holds only
// the counter's keys, in the shape of pipetest.State. It fails when the
// followers sets do not mirror the following sets.
func redisState(ctx context.Context, rdb *redis.Client) (pipetest.State, error) {
	s := pipetest.State{Likes: map[string]bool{}, Follows: map[string]bool{}, Counts: map[string]int64{}, Users: map[string][2]int64{}}
	reverse := map[string]bool{} // from the hgp:fr:<user> sets
	iter := rdb.Scan(ctx, 0, "hgp:*", 1000).Iterator()
	for key := range iter.Vals(ctx) {
		switch {
		case strings.HasPrefix(key, "hgp:c:{"):
			ns, id, err := itemOf(key, "hgp:c:")
			if err != nil {
				return s, err
			}
			h, err := rdb.HGetAll(ctx, key).Result()
			if err != nil {
				return s, err
			}
			for f, v := range h {
				if f == redisstore.LoadedField || f == redisstore.AbsentField {
					continue
				}
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return s, fmt.Errorf("%s field %s: %w", key, f, err)
				}
				if n != 0 {
					s.Counts[ns+"/"+id+"/"+f] = n
				}
			}
		case strings.HasPrefix(key, "hgp:lk:{"):
			ns, id, err := itemOf(key, "hgp:lk:")
			if err != nil {
				return s, err
			}
			members, err := rdb.SMembers(ctx, key).Result()
			if err != nil {
				return s, err
			}
			for _, u := range members {
				s.Likes[ns+"/"+id+"/"+u] = true
			}
		case strings.HasPrefix(key, "hgp:fg:"), strings.HasPrefix(key, "hgp:fr:"):
			user := key[len("hgp:fg:"):]
			members, err := rdb.SMembers(ctx, key).Result()
			if err != nil {
				return s, err
			}
			for _, v := range members {
				if strings.HasPrefix(key, "hgp:fg:") {
					s.Follows[user+"/"+v] = true
				} else {
					reverse[v+"/"+user] = true
				}
			}
		case strings.HasPrefix(key, "hgp:u:"):
			h, err := rdb.HGetAll(ctx, key).Result()
			if err != nil {
				return s, err
			}
			var c [2]int64
			for i, f := range []string{"followers", "following"} {
				if v, ok := h[f]; ok {
					if c[i], err = strconv.ParseInt(v, 10, 64); err != nil {
						return s, fmt.Errorf("%s field %s: %w", key, f, err)
					}
				}
			}
			if c != [2]int64{} {
				s.Users[key[len("hgp:u:"):]] = c
			}
		}
	}
	if err := iter.Err(); err != nil {
		return s, err
	}
	if !maps.Equal(s.Follows, reverse) {
		return s, fmt.Errorf("redis: %d follow pairs in the following sets, %d in the followers sets", len(s.Follows), len(reverse))
	}
	return s, nil
}

// itemOf parses "<prefix>{<ns>:<id>}".
func itemOf(key, prefix string) (string, string, error) {
	tag := strings.TrimSuffix(strings.TrimPrefix(key, prefix+"{"), "}")
	ns, id, ok := strings.Cut(tag, ":")
	if !ok || len(tag) != len(key)-len(prefix)-2 {
		return "", "", fmt.Errorf("unexpected key %q", key)
	}
	return ns, id, nil
}

// outboxFields returns the fields the counter's Lua script appends to the
// outbox for op (the contract the relay's Convert reads).
func outboxFields(o pipetest.Op) map[string]any {
	f := map[string]any{"k": o.Kind, "u": o.User}
	switch o.Kind {
	case "like", "unlike":
		f["ns"], f["id"], f["d"] = o.Namespace, o.Item, "1"
		if o.Kind == "unlike" {
			f["d"] = "-1"
		}
	case "follow", "unfollow":
		f["t"], f["d"] = o.Target, "1"
		if o.Kind == "unfollow" {
			f["d"] = "-1"
		}
	case "incr":
		f["ns"], f["id"], f["m"], f["d"], f["ik"] = o.Namespace, o.Item, o.Metric, strconv.FormatInt(o.Delta, 10), o.IdemKey
	}
	return f
}
