package identity

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/config"
)

func newSigner(t *testing.T, secret string) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const like = "/highgopress.counter.v1.CounterService/Like"

func TestSignVerify(t *testing.T) {
	s := newSigner(t, strings.Repeat("k", 32))
	for _, user := range []string{"u1", "alice:with.colons", "x"} {
		got, err := s.Verify(s.Sign(user, like), like)
		if err != nil || got != user {
			t.Fatalf("Verify(Sign(%q)) = %q, %v", user, got, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	s := newSigner(t, strings.Repeat("k", 32))
	other := newSigner(t, strings.Repeat("o", 32))
	valid := s.Sign("u1", like)
	parts := strings.SplitN(valid, ":", 4)
	old := newSigner(t, strings.Repeat("k", 32))
	old.now = func() time.Time { return time.Now().Add(-MaxSkew - time.Minute) }
	cases := map[string]string{
		"empty":           "",
		"garbage":         "hello",
		"other secret":    other.Sign("u1", like),
		"other procedure": s.Sign("u1", "/highgopress.counter.v1.CounterService/GetCounts"),
		"user swapped":    parts[0] + ":" + parts[1] + ":" + parts[2] + ":u2",
		"time swapped":    parts[0] + ":1:" + parts[2] + ":" + parts[3],
		"stale":           old.Sign("u1", like),
		"wrong version":   "v1:" + parts[1] + ":" + parts[2] + ":" + parts[3],
	}
	for name, v := range cases {
		if u, err := s.Verify(v, like); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %q, %v; want ErrInvalid", name, u, err)
		}
	}
}

func TestShortSecretRejected(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("want error for a short secret")
	}
}

type fakeReq struct {
	connect.AnyRequest
	h http.Header
}

func (f fakeReq) Header() http.Header { return f.h }
func (f fakeReq) Spec() connect.Spec  { return connect.Spec{Procedure: like} }

func TestInterceptor(t *testing.T) {
	s := newSigner(t, strings.Repeat("k", 32))
	var seen string
	var seenOK bool
	next := func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		seen, seenOK = Actor(ctx)
		return nil, nil
	}
	call := NewInterceptor(s).WrapUnary(next)

	h := http.Header{}
	h.Set(Header, s.Sign("u9", like))
	if _, err := call(context.Background(), fakeReq{h: h}); err != nil || !seenOK || seen != "u9" {
		t.Fatalf("signed: actor=%q ok=%v err=%v", seen, seenOK, err)
	}
	if _, err := call(context.Background(), fakeReq{h: http.Header{}}); err != nil || seenOK {
		t.Fatalf("anonymous: actor=%q ok=%v err=%v", seen, seenOK, err)
	}
	h.Set(Header, s.Sign("u9", "/highgopress.counter.v1.CounterService/GetCounts"))
	seenOK = false
	_, err := call(context.Background(), fakeReq{h: h})
	if connect.CodeOf(err) != connect.CodeUnauthenticated || seenOK {
		t.Fatalf("signed for another procedure: code=%v reached handler=%v", connect.CodeOf(err), seenOK)
	}
}

func TestRotationAcceptsPreviousSecrets(t *testing.T) {
	oldS := []byte(strings.Repeat("o", MinSecretLen))
	newS := []byte(strings.Repeat("n", MinSecretLen))
	otherS := []byte(strings.Repeat("x", MinSecretLen))
	const proc = "/highgopress.counter.v1.CounterService/Like"
	oldGateway, _ := NewSigner(oldS)
	newGateway, _ := NewSigner(newS)
	stranger, _ := NewSigner(otherS)
	// Step 1: backends accept the new secret too, still signing nothing.
	backend, err := NewSigner(oldS, newS)
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*Signer{"old gateway": oldGateway, "new gateway": newGateway} {
		if u, err := backend.Verify(g.Sign("alice", proc), proc); err != nil || u != "alice" {
			t.Fatalf("%s during rotation: %q, %v", name, u, err)
		}
	}
	if _, err := backend.Verify(stranger.Sign("alice", proc), proc); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a third secret was accepted: %v", err)
	}
	// Step 3: the old secret is dropped.
	after, _ := NewSigner(newS)
	if _, err := after.Verify(oldGateway.Sign("alice", proc), proc); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old secret still accepted after rotation: %v", err)
	}
	if _, err := NewSigner(newS, []byte("short")); err == nil {
		t.Fatal("a short previous secret was accepted")
	}
}

func TestSecretsFrom(t *testing.T) {
	long := strings.Repeat("s", MinSecretLen)
	r := config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": long, "HGP_IDENTITY_SECRET_PREVIOUS": long + "1, " + long + "2"})
	s, prev := SecretsFrom(r)
	if r.Err() != nil || string(s) != long || len(prev) != 2 || string(prev[1]) != long+"2" {
		t.Fatalf("SecretsFrom = %q %q %v", s, prev, r.Err())
	}
	r = config.FromMap(map[string]string{"HGP_IDENTITY_SECRET": "short", "HGP_IDENTITY_SECRET_PREVIOUS": "tiny"})
	SecretsFrom(r)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "HGP_IDENTITY_SECRET:") || !strings.Contains(err.Error(), "HGP_IDENTITY_SECRET_PREVIOUS") {
		t.Fatalf("short secrets: %v", err)
	}
	r = config.FromMap(nil)
	SecretsFrom(r)
	if r.Err() == nil {
		t.Fatal("a missing secret was accepted")
	}
}
