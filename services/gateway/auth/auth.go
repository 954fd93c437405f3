// Package auth verifies the bearer tokens (JWTs) end users present to the
// gateway and mints tokens for development and tests.
//
// The accepted algorithms follow from the configured keys: HS256 when a
// shared secret is configured, RS256 when RSA public keys are. Everything
// else, "none" included, is rejected before any key is consulted. A valid
// token carries exp, iss and aud matching the configuration and a subject
// that is a valid user id; nbf and iat, when present, are honoured.
package auth

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/highgopress/highgopress/platform/ids"
)

// MinHS256SecretLen is the shortest accepted HS256 secret, in bytes (RFC 7518
// asks for a key at least as long as the hash output).
const MinHS256SecretLen = 32

// MinRSABits is the smallest accepted RSA modulus.
const MinRSABits = 2048

// MaxTokenLen bounds the length of a bearer token.
const MaxTokenLen = 8 << 10

// Public reasons a token is refused. Their messages are safe to show to
// clients: they say what is wrong without revealing keys or internals.
var (
	ErrMissing      = errors.New("missing bearer token")
	ErrScheme       = errors.New("authorization header must be \"Bearer <token>\"")
	ErrTooLong      = errors.New("token is too long")
	ErrMalformed    = errors.New("token is malformed")
	ErrAlgorithm    = errors.New("token signing algorithm is not accepted")
	ErrSignature    = errors.New("token signature is invalid")
	ErrExpired      = errors.New("token is expired")
	ErrNotYetValid  = errors.New("token is not valid yet")
	ErrIssuedLater  = errors.New("token is issued in the future")
	ErrNoExpiry     = errors.New("token has no expiry (exp)")
	ErrIssuer       = errors.New("token has the wrong issuer")
	ErrAudience     = errors.New("token has the wrong audience")
	ErrSubject      = errors.New("token subject (sub) is missing or not a valid user id")
	errUnknownInput = errors.New("token is invalid")
)

// TokenError is the error Verify returns. Reason is one of the public Err*
// values; Cause holds the underlying detail for logs.
type TokenError struct {
	Reason error
	Cause  error
}

func (e *TokenError) Error() string {
	if e.Cause == nil {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Cause.Error()
}

// Unwrap returns the reason and the cause.
func (e *TokenError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Cause}
}

// Reason returns the public reason behind err: one of the Err* values, or a
// generic "token is invalid" for anything else.
func Reason(err error) error {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	for _, r := range []error{ErrMissing, ErrScheme, ErrTooLong} {
		if errors.Is(err, r) {
			return r
		}
	}
	return errUnknownInput
}

// Config says which tokens a Verifier accepts. At least one of HS256Secret
// and RS256Keys is required.
type Config struct {
	// HS256Secret enables HS256 with this shared secret.
	HS256Secret []byte
	// HS256Previous are secrets still accepted while HS256Secret is rotated
	// (tokens signed with any of them verify); they need HS256Secret.
	HS256Previous [][]byte
	// RS256Keys enables RS256; a token verifies if any key verifies it.
	RS256Keys []*rsa.PublicKey
	// Issuer is the required iss claim.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway time.Duration
}

// Claims are what the gateway uses from a verified token.
type Claims struct {
	// Subject is the acting user.
	Subject string
	// ExpiresAt is when the token stops being valid.
	ExpiresAt time.Time
}

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	parser  *jwt.Parser
	methods []string
	hs      jwt.VerificationKeySet // HS256Secret first, then HS256Previous
	rs      jwt.VerificationKeySet
	now     func() time.Time
	cache   *verifiedTokens
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg Config, opts ...Option) (*Verifier, error) {
	o := options{now: time.Now, cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	v := &Verifier{now: o.now, cache: newVerifiedTokens(o.cacheSize)}
	if cfg.HS256Secret != nil {
		if len(cfg.HS256Secret) < MinHS256SecretLen {
			return nil, fmt.Errorf("HS256 secret must be at least %d bytes, got %d", MinHS256SecretLen, len(cfg.HS256Secret))
		}
		v.hs.Keys = append(v.hs.Keys, append([]byte(nil), cfg.HS256Secret...))
		for i, p := range cfg.HS256Previous {
			if len(p) < MinHS256SecretLen {
				return nil, fmt.Errorf("previous HS256 secret %d must be at least %d bytes, got %d", i+1, MinHS256SecretLen, len(p))
			}
			v.hs.Keys = append(v.hs.Keys, append([]byte(nil), p...))
		}
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	} else if len(cfg.HS256Previous) > 0 {
		return nil, errors.New("previous HS256 secrets need a current HS256 secret")
	}
	if len(cfg.RS256Keys) > 0 {
		for i, k := range cfg.RS256Keys {
			if k == nil || k.N == nil {
				return nil, fmt.Errorf("RS256 key %d is empty", i)
			}
			if k.N.BitLen() < MinRSABits {
				return nil, fmt.Errorf("RS256 key %d has %d bits, need at least %d", i, k.N.BitLen(), MinRSABits)
			}
			v.rs.Keys = append(v.rs.Keys, k)
		}
		v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(v.methods) == 0 {
		return nil, errors.New("no token verification key configured (need an HS256 secret or RS256 public keys)")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("issuer must not be empty")
	}
	if cfg.Audience == "" {
		return nil, errors.New("audience must not be empty")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("leeway must not be negative, got %s", cfg.Leeway)
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
	}
	popts = append(popts, jwt.WithTimeFunc(o.now))
	v.parser = jwt.NewParser(popts...)
	return v, nil
}

// Methods returns the accepted signing algorithms.
func (v *Verifier) Methods() []string { return append([]string(nil), v.methods...) }

func (v *Verifier) key(t *jwt.Token) (any, error) {
	// The parser already refused algorithms outside v.methods; matching the
	// key to the method type keeps an RSA key from ever reaching HMAC.
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(v.hs.Keys) > 0 {
			return v.hs, nil
		}
	case *jwt.SigningMethodRSA:
		if len(v.rs.Keys) > 0 {
			return v.rs, nil
		}
	}
	return nil, ErrAlgorithm
}

// Verify checks a raw token (without the "Bearer " prefix) and returns its
// claims. Errors are *TokenError.
func (v *Verifier) Verify(token string) (Claims, error) {
	if len(token) > MaxTokenLen {
		return Claims{}, &TokenError{Reason: ErrTooLong}
	}
	now := v.now()
	if c, ok := v.cache.get(token, now); ok {
		return c, nil
	}
	var rc jwt.RegisteredClaims
	t, err := v.parser.ParseWithClaims(token, &rc, v.key)
	if err != nil {
		return Claims{}, &TokenError{Reason: v.classify(t, &rc, err), Cause: err}
	}
	if !ValidUserID(rc.Subject) {
		return Claims{}, &TokenError{Reason: ErrSubject}
	}
	c := Claims{Subject: rc.Subject}
	if rc.ExpiresAt != nil {
		c.ExpiresAt = rc.ExpiresAt.Time
	}
	v.cache.put(token, c, now)
	return c, nil
}

func (v *Verifier) classify(t *jwt.Token, rc *jwt.RegisteredClaims, err error) error {
	// Order matters: the parser joins every failed claim check, and the
	// client is told the most fundamental problem.
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrInvalidType):
		return ErrMalformed
	case errors.Is(err, ErrAlgorithm), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && !v.accepts(t.Method.Alg()) {
			return ErrAlgorithm
		}
		return ErrSignature
	case rc.ExpiresAt == nil:
		return ErrNoExpiry
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrIssuedLater
	case rc.Issuer == "", errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrIssuer
	case len(rc.Audience) == 0, errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrAudience
	}
	return errUnknownInput
}

func (v *Verifier) accepts(alg string) bool {
	for _, m := range v.methods {
		if m == alg {
			return true
		}
	}
	return false
}

// BearerToken extracts the token from a request's Authorization header.
// present is false when there is no Authorization header at all; a header
// that is present but not a single "Bearer <token>" is an error.
func BearerToken(h http.Header) (token string, present bool, err error) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, ErrScheme
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true, ErrScheme
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", true, ErrScheme
	}
	if len(tok) > MaxTokenLen {
		return "", true, ErrTooLong
	}
	return tok, true, nil
}

// ValidUserID reports whether s is a valid user id (platform/ids): the same
// rule the backends apply, so every accepted subject can act there.
func ValidUserID(s string) bool { return ids.ValidUserID(s) }
