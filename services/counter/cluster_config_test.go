package counter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/redisstore"
)

// A list of Redis addresses selects the cluster layout; MySQL (rebuilds,
// settling, reconciliation) is refused there at start-up, naming the
// variable, before anything is dialled.
func TestClusterConfig(t *testing.T) {
	r := config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": clusterTestSecret, "HGP_REDIS_ADDR": "127.0.0.1:1,127.0.0.1:2"})
	c := ConfigFrom(r)
	if err := r.Err(); err != nil || !c.Redis.Cluster {
		t.Fatalf("cluster %t, %v", c.Redis.Cluster, err)
	}
	var o options
	for _, opt := range c.options() {
		opt(&o)
	}
	if !o.cluster {
		t.Fatal("the cluster layout is not selected")
	}
	r = config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": clusterTestSecret, "HGP_REDIS_ADDR": "127.0.0.1:1",
		"HGP_REDIS_CLUSTER": "true", "HGP_MYSQL_DSN": "u:p@tcp(127.0.0.1:3306)/d"})
	_ = ConfigFrom(r)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "HGP_MYSQL_DSN: rebuilding from MySQL, settling and reconciliation need a single Redis") {
		t.Fatalf("error %v", err)
	}
}

// The cluster layout puts an item's keys and its outbox shard under one
// hash tag; the single layout is unchanged.
func TestClusterKeysShareTheShardTag(t *testing.T) {
	it := domain.ItemRef{Namespace: "article", ID: "a1"}
	k := redisstore.ClusterShard(it)
	if k < 0 || k >= redisstore.ClusterShards {
		t.Fatalf("shard %d", k)
	}
	tag := "{s" + strconv.Itoa(k) + "}"
	if st := redisstore.ClusterOutboxStream(k); st != "hgp:outbox:"+tag {
		t.Fatalf("stream %s", st)
	}
	if got := redisstore.CountsKey(it); got != "hgp:c:{article:a1}" {
		t.Fatalf("single layout changed: %s", got)
	}
}

const clusterTestSecret = "0123456789abcdef0123456789abcdef"
