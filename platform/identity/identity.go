// Package identity carries the acting user from the gateway to backends.
//
// The gateway is the only component that reads end-user credentials. It
// forwards the authenticated user in the Header, signed with an HMAC secret
// shared only by the gateway and the backends; backends trust the user only
// when the signature verifies, the stamp is fresh and the signed procedure is
// the one being called (a header seen on a read cannot be replayed on a
// write). The gateway strips any copy of the header a client sends.
package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header is the internal header holding the signed acting user.
const Header = "Hgp-Actor"

// MinSecretLen is the shortest accepted shared secret, in bytes.
const MinSecretLen = 32

// MaxSkew is how old (or how far in the future) a signature may be.
const MaxSkew = 2 * time.Minute

// Period is the granularity of a signature's stamp: Sign stamps a value
// with the start of the current period, so that a user's header for one
// procedure stays the same for the whole period — computed once, and
// indexed by HPACK on the gateway's connections to backends. A value is
// accepted until MaxSkew after its stamp, as any; it is handed out for at
// most Period of that, which leaves MaxSkew − Period for clock skew
// between gateway and backend.
const Period = 10 * time.Second

const periodSeconds = int64(Period / time.Second)

// ErrInvalid reports a header that is malformed, forged or stale.
var ErrInvalid = errors.New("invalid internal identity header")

// Signer signs and verifies the identity header.
type Signer struct {
	secret []byte
	// previous secrets are still accepted by Verify (never used to sign):
	// how the secret is rotated without downtime (docs/operations.md).
	previous [][]byte
	now      func() time.Time
	// signed remembers the value of the current period per (procedure,
	// user); verified the values found valid per (procedure, value), so
	// that a value seen again costs a lookup instead of an HMAC. Both
	// forget entries two periods after their stamp.
	signed, verified *memo
}

// NewSigner returns a Signer for a shared secret of at least MinSecretLen
// bytes. Verify also accepts headers signed with any of previous.
func NewSigner(secret []byte, previous ...[]byte) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("identity secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	s := &Signer{
		secret: append([]byte(nil), secret...), now: time.Now,
		signed: newMemo(2 * periodSeconds), verified: newMemo(2 * periodSeconds),
	}
	for i, p := range previous {
		if len(p) < MinSecretLen {
			return nil, fmt.Errorf("previous identity secret %d must be at least %d bytes, got %d", i+1, MinSecretLen, len(p))
		}
		s.previous = append(s.previous, append([]byte(nil), p...))
	}
	return s, nil
}

// Sign returns the header value naming user for calls of procedure (for
// example "/highgopress.counter.v1.CounterService/Like"), stamped with the
// start of the current Period and valid until MaxSkew after it. Calls in
// the same period get the same value.
func (s *Signer) Sign(user, procedure string) string {
	now := s.now().Unix()
	stamp := now - now%periodSeconds
	k := memoKey{procedure, user}
	if e, ok := s.signed.get(k); ok && e.stamp == stamp {
		return e.value
	}
	ts := strconv.FormatInt(stamp, 10)
	v := "v2:" + ts + ":" + mac(s.secret, ts, procedure, user) + ":" + user
	s.signed.put(k, memoEntry{value: v, stamp: stamp}, now)
	return v
}

// Verify returns the user named by a header value signed for procedure.
func (s *Signer) Verify(value, procedure string) (string, error) {
	k := memoKey{procedure, value}
	if e, ok := s.verified.get(k); ok {
		// The signature was checked; the stamp is checked every time.
		if !s.fresh(e.stamp) {
			return "", fmt.Errorf("%w: stale signature", ErrInvalid)
		}
		return e.value, nil
	}
	parts := strings.SplitN(value, ":", 4)
	if len(parts) != 4 || parts[0] != "v2" || parts[3] == "" {
		return "", fmt.Errorf("%w: malformed", ErrInvalid)
	}
	ts, sig, user := parts[1], parts[2], parts[3]
	ok := hmac.Equal([]byte(sig), []byte(mac(s.secret, ts, procedure, user)))
	for _, p := range s.previous {
		ok = ok || hmac.Equal([]byte(sig), []byte(mac(p, ts, procedure, user)))
	}
	if !ok {
		return "", fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: bad timestamp", ErrInvalid)
	}
	if !s.fresh(sec) {
		return "", fmt.Errorf("%w: stale signature", ErrInvalid)
	}
	s.verified.put(k, memoEntry{value: user, stamp: sec}, s.now().Unix())
	return user, nil
}

// fresh reports whether a stamp is within MaxSkew of now.
func (s *Signer) fresh(stamp int64) bool {
	d := s.now().Sub(time.Unix(stamp, 0))
	return d <= MaxSkew && d >= -MaxSkew
}

func mac(secret []byte, ts, procedure, user string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v2\x00" + ts + "\x00" + procedure + "\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

type actorKey struct{}

// WithActor returns a context carrying the acting user.
func WithActor(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, actorKey{}, user)
}

// Actor returns the acting user, if the request carried a verified one.
func Actor(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(actorKey{}).(string)
	return u, ok && u != ""
}
