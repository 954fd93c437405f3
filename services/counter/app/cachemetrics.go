package app

import (
	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

// cacheLookups counts the keys read through the hot-read caches by cache
// (items, users) and result: hit (a fresh cached value), coalesced (waited
// for a Redis fetch already running for the key), miss (fetched from
// Redis by this read; every key when the cache is off).
var cacheLookups = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "hgp_counter_cache_lookups_total",
	Help: "Keys read through the counter's hot-read cache, by cache (items, users) and result (hit, coalesced, miss).",
}, []string{"cache", "result"}))

// cacheObserver is a cache.Observer feeding cacheLookups; its counters are
// resolved once, so a read costs at most three atomic adds.
type cacheObserver struct{ hit, coalesced, miss prometheus.Counter }

func newCacheObserver(cache string) cacheObserver {
	return cacheObserver{
		hit:       cacheLookups.WithLabelValues(cache, "hit"),
		coalesced: cacheLookups.WithLabelValues(cache, "coalesced"),
		miss:      cacheLookups.WithLabelValues(cache, "miss"),
	}
}

// Observe implements cache.Observer.
func (o cacheObserver) Observe(hits, coalesced, misses int) {
	if hits > 0 {
		o.hit.Add(float64(hits))
	}
	if coalesced > 0 {
		o.coalesced.Add(float64(coalesced))
	}
	if misses > 0 {
		o.miss.Add(float64(misses))
	}
}
