package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

// Config is one load run.
type Config struct {
	URL         string
	Op          string
	Rate        int
	Concurrency int
	Duration    time.Duration
	MaxRequests int
	Users       int
	Items       int
	Secret      string
	Label       string
	// Batch is the number of items per GetCounts (default 1).
	Batch int
	// Prefix starts every item id ("load-"): a new prefix is a new item
	// space, every item touched for the first time.
	Prefix string
	// Zipf, when > 1, draws items from a Zipf distribution of that
	// exponent (a few hot items, a long tail) instead of uniformly.
	Zipf float64
	// Namespace is the watch scenarios' namespace (default: a fresh one).
	Namespace string
	// Watchers is the number of streams of the watch scenarios.
	Watchers int
}

// Result summarises a run. Latencies are in microseconds.
type Result struct {
	Label       string         `json:"label,omitempty"`
	Op          string         `json:"op"`
	Mode        string         `json:"mode"`
	Rate        int            `json:"rate,omitempty"`
	Concurrency int            `json:"concurrency"`
	Requests    int64          `json:"requests"`
	Errors      int64          `json:"errors"`
	Statuses    map[string]int `json:"statuses"`
	Seconds     float64        `json:"seconds"`
	RPS         float64        `json:"rps"`
	P50us       int64          `json:"p50_us"`
	P90us       int64          `json:"p90_us"`
	P99us       int64          `json:"p99_us"`
	MaxUs       int64          `json:"max_us"`
	Time        time.Time      `json:"time"`
}

func (r Result) String() string {
	return fmt.Sprintf("%s %s (%s, c=%d rate=%d): %d requests, %d errors in %.1fs = %.0f req/s; p50 %dus p90 %dus p99 %dus max %dus; statuses %v",
		r.Label, r.Op, r.Mode, r.Concurrency, r.Rate, r.Requests, r.Errors, r.Seconds, r.RPS, r.P50us, r.P90us, r.P99us, r.MaxUs, r.Statuses)
}

const (
	likePath      = counterv1connect.CounterServiceLikeProcedure
	getCountsPath = counterv1connect.CounterServiceGetCountsProcedure
)

func validate(c Config) (*url.URL, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-url %q is not a URL", c.URL)
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("-url host %q: %w", u.Hostname(), err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("-url host %q resolves to %s: load is only sent to loopback addresses", u.Hostname(), ip)
		}
	}
	switch {
	case !slices.Contains([]string{"like", "getcounts", "mixed", "ceiling", opTopItems, opWatchCounts, opWatchTop}, c.Op):
		return nil, fmt.Errorf("-op %q: want like, getcounts, mixed, ceiling, topitems, watchcounts or watchtop", c.Op)
	case c.Duration <= 0 || c.Duration > 10*time.Minute:
		return nil, fmt.Errorf("-duration %s: want (0, 10m]", c.Duration)
	case c.Concurrency < 1 || c.Concurrency > 10_000:
		return nil, fmt.Errorf("-concurrency %d: want [1, 10000]", c.Concurrency)
	case c.Rate < 0 || c.Rate > 1_000_000:
		return nil, fmt.Errorf("-rate %d: want [0, 1000000]", c.Rate)
	case c.Users < 1 || c.Items < 1 || c.MaxRequests < 1:
		return nil, errors.New("-users, -items and -max-requests must be positive")
	case c.Batch < 0 || c.Batch > 1000:
		return nil, fmt.Errorf("-batch %d: want [1, 1000]", c.Batch)
	case c.Zipf != 0 && c.Zipf <= 1:
		return nil, fmt.Errorf("-zipf %g: want 0 (uniform) or > 1", c.Zipf)
	case (c.Op == "like" || c.Op == "mixed" || isWatch(c.Op)) && c.Secret == "":
		return nil, errors.New("-secret (or HGP_JWT_HS256_SECRET) is needed to mint tokens for writes")
	}
	return u, nil
}

// Run executes one bounded load run, printing progress to progress.
func Run(ctx context.Context, c Config, progress io.Writer) (Result, error) {
	base, err := validate(c)
	if err != nil {
		return Result{}, err
	}
	tokens := make([]string, c.Users)
	if c.Secret != "" {
		for i := range tokens {
			if tokens[i], err = auth.Issue([]byte(c.Secret), "load-user-"+strconv.Itoa(i), time.Hour,
				gateway.DefaultIssuer, gateway.DefaultAudience); err != nil {
				return Result{}, fmt.Errorf("mint token: %w", err)
			}
		}
	}
	if isWatch(c.Op) {
		return runWatch(ctx, c, base, tokens, progress)
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        c.Concurrency * 2,
			MaxIdleConnsPerHost: c.Concurrency * 2,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	defer client.CloseIdleConnections()

	var (
		sent     atomic.Int64
		errs     atomic.Int64
		mu       sync.Mutex
		lat      = make([]int64, 0, 1<<16)
		statuses = map[string]int{}
	)
	record := func(d time.Duration, status string, ok bool) {
		if !ok {
			errs.Add(1)
		}
		mu.Lock()
		lat = append(lat, d.Microseconds())
		statuses[status]++
		mu.Unlock()
	}
	one := func(rng *rand.Rand, scheduled time.Time) {
		path, body, tok := request(c, rng, tokens)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				record(time.Since(scheduled), "transport-error", false)
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		record(time.Since(scheduled), strconv.Itoa(resp.StatusCode), resp.StatusCode == http.StatusOK)
	}

	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	start := time.Now()
	stopProgress := reportProgress(ctx, progress, &sent, &errs)
	var wg sync.WaitGroup
	mode := "closed-loop"
	if c.Rate == 0 {
		for w := 0; w < c.Concurrency; w++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, seed*7+1))
				for ctx.Err() == nil && sent.Add(1) <= int64(c.MaxRequests) {
					one(rng, time.Now())
				}
			}(uint64(w + 1))
		}
	} else {
		mode = "open-loop"
		interval := time.Second / time.Duration(c.Rate)
		slots := make(chan struct{}, c.Concurrency)
		rng := rand.New(rand.NewPCG(1, 2))
		next := time.Now()
	loop:
		for i := 0; i < c.MaxRequests; i++ {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					break loop
				case <-time.After(d):
				}
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				break loop
			}
			sent.Add(1)
			scheduled := next
			seed := rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				one(rand.New(rand.NewPCG(seed, seed+1)), scheduled)
			}()
			next = next.Add(interval)
		}
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start).Seconds()

	slices.Sort(lat)
	return summarize(c, mode, lat, errs.Load(), statuses, elapsed), nil
}

// summarize is a run's result from its sorted latencies (microseconds).
func summarize(c Config, mode string, lat []int64, errs int64, statuses map[string]int, elapsed float64) Result {
	q := func(p float64) int64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	res := Result{
		Label: c.Label, Op: c.Op, Mode: mode, Rate: c.Rate, Concurrency: c.Concurrency,
		Requests: int64(len(lat)), Errors: errs, Statuses: statuses, Seconds: elapsed,
		RPS: float64(len(lat)) / elapsed, P50us: q(0.50), P90us: q(0.90), P99us: q(0.99), Time: time.Now().UTC(),
	}
	if len(lat) > 0 {
		res.MaxUs = lat[len(lat)-1]
	}
	return res
}

func request(c Config, rng *rand.Rand, tokens []string) (string, []byte, string) {
	prefix := c.Prefix
	if prefix == "" {
		prefix = "load-"
	}
	pick := func() uint64 { return uint64(rng.IntN(c.Items)) }
	if c.Zipf > 1 {
		z := rand.NewZipf(rng, c.Zipf, 1, uint64(c.Items-1))
		pick = z.Uint64
	}
	item := pick()
	op := c.Op
	if op == opTopItems {
		path, body := topItemsRequest()
		return path, body, ""
	}
	if op == "mixed" {
		op = "getcounts"
		if rng.IntN(10) < 3 {
			op = "like"
		}
	}
	switch op {
	case "like", "ceiling":
		tok := ""
		if len(tokens) > 0 {
			tok = tokens[rng.IntN(len(tokens))]
		}
		return likePath, fmt.Appendf(nil, `{"item":{"namespace":"article","id":"%s%d"}}`, prefix, item), tok
	default:
		body := fmt.Appendf(nil, `{"items":[{"namespace":"article","id":"%s%d"}`, prefix, item)
		for i := 1; i < c.Batch; i++ {
			body = fmt.Appendf(body, `,{"namespace":"article","id":"%s%d"}`, prefix, pick())
		}
		return getCountsPath, append(body, "]}"...), ""
	}
}

func reportProgress(ctx context.Context, w io.Writer, sent, errs *atomic.Int64) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(w, "hgpload: %d sent, %d errors\n", sent.Load(), errs.Load())
			}
		}
	}()
	return func() { close(done); <-stopped }
}
