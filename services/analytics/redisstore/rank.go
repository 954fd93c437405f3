package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/platform/ids"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/window"
)

// Limits of a ranking page.
const (
	DefaultLimit = 10
	MaxLimit     = 100
)

// snapKey is what a snapshot ranks.
type snapKey struct {
	ns string
	w  analyticsv1.Window
}

// snapEntry is this replica's newest snapshot of a ranking; mu serialises
// cutting a new one, so concurrent first pages share one.
type snapEntry struct {
	mu      sync.Mutex
	id      string
	gen     string
	last    int64 // newest bucket of the window when cut
	created time.Time
	checked time.Time // when the generation was last found unchanged
	asOf    time.Time
	count   int64
	// pages are the first pages of snapshot id by limit: a snapshot never
	// changes, so while it is reused its first pages are answered without
	// Redis.
	pages map[int]domain.Page
}

// firstPage returns the cached first page of snapshot id with n items.
func (e *snapEntry) firstPage(id string, n int) (domain.Page, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pages[n]
	return p, ok && e.id == id
}

// keepFirstPage caches the first page of snapshot id with n items, unless
// a newer snapshot replaced it meanwhile.
func (e *snapEntry) keepFirstPage(id string, n int, p domain.Page) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.id != id {
		return
	}
	if e.pages == nil {
		e.pages = map[int]domain.Page{}
	}
	e.pages[n] = p
}

// CheckRanking validates a ranking request's namespace, window and limit
// and returns the limit to use (0 → DefaultLimit).
func CheckRanking(ns string, w analyticsv1.Window, limit int32) (int, error) {
	if err := ids.CheckNamespace(ns); err != nil {
		return 0, domain.Invalid("namespace", "%s", err.Error())
	}
	if _, ok := window.RankingSpan(w); !ok && w != analyticsv1.Window_WINDOW_ALL_TIME {
		return 0, domain.Invalid("window", "must be WINDOW_HOUR, WINDOW_DAY, WINDOW_WEEK or WINDOW_ALL_TIME, got %s", w)
	}
	if limit < 0 || limit > MaxLimit {
		return 0, domain.Invalid("limit", "must be between 1 and %d (0 means %d), got %d", MaxLimit, DefaultLimit, limit)
	}
	if limit == 0 {
		return DefaultLimit, nil
	}
	return int(limit), nil
}

// Top returns a page of the ranking of namespace ns in window w: items by
// net likes descending, then item id ascending, with positive scores only;
// ranks are positions in the whole ranking. Without a token the page is
// the first of the newest snapshot; with one it continues the token's
// snapshot. Bad input fails with a *domain.FieldError.
func (s *Store) Top(ctx context.Context, ns string, w analyticsv1.Window, limit int32, token string) (domain.Page, error) {
	n, err := CheckRanking(ns, w, limit)
	if err != nil {
		return domain.Page{}, err
	}
	if token != "" {
		t, err := parseToken(token)
		if err != nil {
			return domain.Page{}, err
		}
		if t.ns != ns || t.w != w {
			return domain.Page{}, domain.Invalid("page_token", "belongs to another ranking (namespace %q, %s)", t.ns, t.w)
		}
		return s.page(ctx, ns, w, t.id, t.offset, n)
	}
	id, e, err := s.snapshot(ctx, ns, w)
	if err != nil {
		return domain.Page{}, err
	}
	if p, ok := e.firstPage(id, n); ok {
		return p, nil
	}
	p, err := s.page(ctx, ns, w, id, 0, n)
	if err == nil {
		e.keepFirstPage(id, n, p)
	}
	return p, err
}

func (s *Store) page(ctx context.Context, ns string, w analyticsv1.Window, id string, offset int64, n int) (domain.Page, error) {
	v, err := pageScript.Run(ctx, s.rdb, []string{s.k.snap(id), s.k.meta(id)}, offset, offset+int64(n)-1).Slice()
	if errors.Is(err, redis.Nil) {
		return domain.Page{}, domain.Invalid("page_token", "has expired (snapshots live %s); start again without a page token", s.o.snapshotTTL)
	}
	if err != nil || len(v) != 2 {
		return domain.Page{}, fmt.Errorf("%w: read ranking page: %v", errUnavailable, err)
	}
	meta, _ := v[0].(string)
	asOfMs, count, ok := parseMeta(meta)
	if !ok {
		return domain.Page{}, fmt.Errorf("%w: snapshot %s: bad meta %q", errUnavailable, id, meta)
	}
	raw, _ := v[1].([]any)
	page := domain.Page{AsOf: time.UnixMilli(asOfMs), Items: make([]domain.RankedItem, 0, len(raw)/2)}
	for i := 0; i+1 < len(raw); i += 2 {
		item, _ := raw[i].(string)
		score, err := strconv.ParseFloat(fmt.Sprint(raw[i+1]), 64)
		if err != nil {
			return domain.Page{}, fmt.Errorf("%w: snapshot %s: bad score %v", errUnavailable, id, raw[i+1])
		}
		page.Items = append(page.Items, domain.RankedItem{Item: item, Score: int64(-score), Rank: offset + int64(i/2) + 1})
	}
	if next := offset + int64(len(page.Items)); next < count && len(page.Items) > 0 {
		page.Next = pageToken{ns: ns, w: w, id: id, offset: next}.String()
	}
	return page, nil
}

// snapshot returns the id of a snapshot of the ranking to cut a first page
// from: this replica's newest while the ranking did not change (same
// generation, same newest bucket) or while it is younger than the
// freshness, otherwise a new one. The generation is read at most once
// per freshness period (a change is seen within the freshness, as a
// reused snapshot would hide it for as long anyway).
func (s *Store) snapshot(ctx context.Context, ns string, w analyticsv1.Window) (string, *snapEntry, error) {
	now := s.o.clock.Now()
	sp, spanned := window.RankingSpan(w)
	var last int64
	if spanned {
		_, last = sp.Range(now)
	}
	s.mu.Lock()
	e := s.snaps[snapKey{ns, w}]
	if e == nil {
		e = &snapEntry{}
		s.snaps[snapKey{ns, w}] = e
	}
	s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	real := time.Now() // snapshot lifetimes are Redis (real) time
	alive := e.id != "" && real.Sub(e.created) < s.o.snapshotTTL/2 && e.last == last
	if alive && real.Sub(e.checked) < s.o.freshness {
		return e.id, e, nil
	}
	gen, err := s.rdb.Get(ctx, s.k.gen(ns)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", nil, fmt.Errorf("%w: read generation: %w", errUnavailable, err)
	}
	if alive && e.gen == gen {
		e.checked = real
		return e.id, e, nil
	}
	var bucketKeys []string
	if spanned {
		first, _ := sp.Range(now)
		for i := first; i <= last; i++ {
			bucketKeys = append(bucketKeys, s.k.bucket(ns, sp.Grain, i))
		}
	} else {
		bucketKeys = []string{s.k.all(ns)}
	}
	id, err := newID()
	if err != nil {
		return "", nil, err
	}
	meta := strconv.FormatInt(now.UnixMilli(), 10)
	keys := append([]string{s.k.snap(id), s.k.meta(id)}, bucketKeys...)
	count, err := snapshotScript.Run(ctx, s.rdb, keys, ms(s.o.snapshotTTL), meta).Int64()
	if err != nil {
		return "", nil, fmt.Errorf("%w: cut ranking snapshot: %w", errUnavailable, err)
	}
	e.id, e.gen, e.last, e.created, e.checked, e.asOf, e.count, e.pages = id, gen, last, real, real, now, count, nil
	return id, e, nil
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("snapshot id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func parseMeta(m string) (asOfMs, count int64, ok bool) {
	a, c, found := strings.Cut(m, "|")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(c, 10, 64)
	return x, y, err1 == nil && err2 == nil
}

// pageToken continues a snapshot: base64url of
// "1|<namespace>|<window number>|<snapshot id>|<offset>".
type pageToken struct {
	ns     string
	w      analyticsv1.Window
	id     string
	offset int64
}

func (t pageToken) String() string {
	raw := "1|" + t.ns + "|" + strconv.Itoa(int(t.w)) + "|" + t.id + "|" + strconv.FormatInt(t.offset, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// maxTokenLen bounds what is decoded.
const maxTokenLen = 256

func parseToken(s string) (pageToken, error) {
	bad := func(why string) (pageToken, error) {
		return pageToken{}, domain.Invalid("page_token", "is not a token this service issued (%s)", why)
	}
	if len(s) > maxTokenLen {
		return bad("too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 5 || parts[0] != "1" {
		return bad("wrong format")
	}
	var t pageToken
	t.ns = parts[1]
	if ids.CheckNamespace(t.ns) != nil {
		return bad("bad namespace")
	}
	w, err := strconv.Atoi(parts[2])
	if err != nil || w < 1 || w > int(analyticsv1.Window_WINDOW_ALL_TIME) {
		return bad("bad window")
	}
	t.w = analyticsv1.Window(w)
	t.id = parts[3]
	if len(t.id) != 16 {
		return bad("bad snapshot id")
	}
	if _, err := hex.DecodeString(t.id); err != nil {
		return bad("bad snapshot id")
	}
	t.offset, err = strconv.ParseInt(parts[4], 10, 64)
	if err != nil || t.offset < 0 || t.offset > 1<<40 || parts[4] != strconv.FormatInt(t.offset, 10) {
		return bad("bad offset")
	}
	return t, nil
}
