package cache

// Observer learns how the keys of each Get were served: hits from fresh
// cached values, coalesced keys waiting for a fetch already running (led by
// another caller, or a key repeated in the same call), misses fetched by
// this call. It is called once per Get, outside the cache's lock, and must
// be cheap and safe for concurrent use. With caching off every key is a
// miss.
type Observer interface {
	Observe(hits, coalesced, misses int)
}

// Option configures a Cache.
type Option func(*options)

type options struct {
	observer Observer
}

// WithObserver counts every Get's hits, coalesced keys and misses.
func WithObserver(o Observer) Option { return func(opts *options) { opts.observer = o } }
