package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/highgopress/highgopress/services/gateway/auth"
)

var secret = []byte(strings.Repeat("s", 32))

func verifier(t testing.TB, cfg auth.Config, opts ...auth.Option) *auth.Verifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = "iss"
	}
	if cfg.Audience == "" {
		cfg.Audience = "aud"
	}
	v, err := auth.NewVerifier(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	v := verifier(t, auth.Config{HS256Secret: secret})
	tok, err := auth.Issue(secret, "user:42", time.Minute, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || c.Subject != "user:42" || time.Until(c.ExpiresAt) > time.Minute || time.Until(c.ExpiresAt) < 58*time.Second {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if got := v.Methods(); !slices.Equal(got, []string{"HS256"}) {
		t.Fatalf("Methods = %v", got)
	}
}

func TestClock(t *testing.T) {
	tok, err := auth.Issue(secret, "u", time.Minute, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	later := verifier(t, auth.Config{HS256Secret: secret, Leeway: 30 * time.Second},
		auth.WithClock(func() time.Time { return time.Now().Add(2 * time.Minute) }))
	if _, err := later.Verify(tok); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("two minutes later: %v, want ErrExpired", err)
	}
	earlier := verifier(t, auth.Config{HS256Secret: secret, Leeway: 30 * time.Second},
		auth.WithClock(func() time.Time { return time.Now().Add(-2 * time.Minute) }))
	if _, err := earlier.Verify(tok); !errors.Is(err, auth.ErrNotYetValid) {
		t.Fatalf("two minutes earlier: %v, want ErrNotYetValid", err)
	}
}

func TestIssueRejects(t *testing.T) {
	cases := map[string]func() (string, error){
		"short secret": func() (string, error) { return auth.Issue([]byte("short"), "u", time.Minute, "i", "a") },
		"bad subject":  func() (string, error) { return auth.Issue(secret, "a b", time.Minute, "i", "a") },
		"no subject":   func() (string, error) { return auth.Issue(secret, "", time.Minute, "i", "a") },
		"zero ttl":     func() (string, error) { return auth.Issue(secret, "u", 0, "i", "a") },
	}
	for name, f := range cases {
		if tok, err := f(); err == nil {
			t.Errorf("%s: Issue = %q, want error", name, tok)
		}
	}
}

func TestNewVerifierRejects(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]auth.Config{
		"no key":       {Issuer: "i", Audience: "a"},
		"short secret": {HS256Secret: []byte("short"), Issuer: "i", Audience: "a"},
		"small RSA":    {RS256Keys: []*rsa.PublicKey{&small.PublicKey}, Issuer: "i", Audience: "a"},
		"nil RSA":      {RS256Keys: []*rsa.PublicKey{nil}, Issuer: "i", Audience: "a"},
		"no issuer":    {HS256Secret: secret, Audience: "a"},
		"no audience":  {HS256Secret: secret, Issuer: "i"},
		"neg leeway":   {HS256Secret: secret, Issuer: "i", Audience: "a", Leeway: -time.Second},
	}
	for name, cfg := range cases {
		if _, err := auth.NewVerifier(cfg); err == nil {
			t.Errorf("%s: NewVerifier succeeded", name)
		}
	}
}

func TestErrorsKeepCauseButReasonIsPublic(t *testing.T) {
	v := verifier(t, auth.Config{HS256Secret: secret})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "iss": "iss", "aud": "aud", "exp": time.Now().Add(-time.Hour).Unix()})
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(s)
	var te *auth.TokenError
	if !errors.As(err, &te) || te.Reason != auth.ErrExpired || te.Cause == nil || !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("Verify = %v", err)
	}
	if auth.Reason(err) != auth.ErrExpired || auth.Reason(errors.New("other")).Error() != "token is invalid" {
		t.Fatal("Reason does not map errors")
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		vals    []string
		tok     string
		present bool
		err     error
	}{
		{nil, "", false, nil},
		{[]string{"Bearer abc"}, "abc", true, nil},
		{[]string{"bearer abc"}, "abc", true, nil},
		{[]string{"Bearer  abc "}, "abc", true, nil},
		{[]string{"Basic abc"}, "", true, auth.ErrScheme},
		{[]string{"Bearer"}, "", true, auth.ErrScheme},
		{[]string{"Bearer "}, "", true, auth.ErrScheme},
		{[]string{""}, "", true, auth.ErrScheme},
		{[]string{"Bearer a", "Bearer b"}, "", true, auth.ErrScheme},
		{[]string{"Bearer " + strings.Repeat("x", auth.MaxTokenLen+1)}, "", true, auth.ErrTooLong},
	}
	for _, c := range cases {
		tok, present, err := auth.BearerToken(http.Header{"Authorization": c.vals})
		if tok != c.tok || present != c.present || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("BearerToken(%q) = %q, %v, %v", c.vals, tok, present, err)
		}
	}
}

func TestValidUserID(t *testing.T) {
	for _, ok := range []string{"a", "User_1", "x.y:z-w", strings.Repeat("a", 64)} {
		if !auth.ValidUserID(ok) {
			t.Errorf("ValidUserID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "ü", "a\x00", strings.Repeat("a", 65), "a\n"} {
		if auth.ValidUserID(bad) {
			t.Errorf("ValidUserID(%q) = true", bad)
		}
	}
}

func TestLoadRSAPublicKeys(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	smallPKIX, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	pkixPath := write("pkix.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}))
	pkcs1Path := write("pkcs1.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)}))
	keys, err := auth.LoadRSAPublicKeys([]string{pkixPath, pkcs1Path})
	if err != nil || len(keys) != 2 || !keys[0].Equal(&key.PublicKey) || !keys[1].Equal(&key.PublicKey) {
		t.Fatalf("LoadRSAPublicKeys = %v, %v", keys, err)
	}

	bad := map[string]string{
		"missing":  filepath.Join(dir, "nope.pem"),
		"not PEM":  write("text.pem", []byte("hello")),
		"small":    write("small.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallPKIX})),
		"garbage":  write("garbage.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("xx")})),
		"priv key": write("priv.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("xx")})),
	}
	for name, p := range bad {
		if _, err := auth.LoadRSAPublicKeys([]string{p}); err == nil {
			t.Errorf("%s: LoadRSAPublicKeys succeeded", name)
		}
	}
	if _, err := auth.LoadRSAPublicKeys(nil); err == nil {
		t.Error("no paths: LoadRSAPublicKeys succeeded")
	}
}

// FuzzVerify: no input makes the verifier panic or accept a token it did not
// sign.
func FuzzVerify(f *testing.F) {
	tok, err := auth.Issue(secret, "u", time.Hour, "iss", "aud")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")
	f.Add(tok[:len(tok)-3] + "abc")
	v := verifier(f, auth.Config{HS256Secret: secret})
	f.Fuzz(func(t *testing.T, s string) {
		c, err := v.Verify(s)
		if err == nil && s != tok {
			// A different string can still be the same token only if it
			// decodes to the same bytes, which strict decoding rules out.
			t.Fatalf("accepted %q as %+v", s, c)
		}
		if err != nil && auth.Reason(err) == nil {
			t.Fatal("nil reason")
		}
	})
}

// TestVerifiedTokensAreRemembered: a token verified once is accepted again
// from memory until it expires, then refused; a changed token (another
// signature) is still verified in full; the memory stays bounded.
func TestVerifiedTokensAreRemembered(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	v := verifier(t, auth.Config{HS256Secret: secret}, auth.WithClock(clock), auth.WithCacheSize(50))
	tok, err := auth.Issue(secret, "u1", time.Minute, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if c, err := v.Verify(tok); err != nil || c.Subject != "u1" {
			t.Fatalf("Verify = %+v, %v", c, err)
		}
	}
	// The same claims under another key's signature.
	forged, err := auth.Issue([]byte(strings.Repeat("f", 32)), "u1", time.Minute, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(forged); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("forged token: %v, want ErrSignature", err)
	}
	// Flipping the last signature character changes the token's bytes.
	if _, err := v.Verify(tok[:len(tok)-1] + string(tok[len(tok)-1]^1)); err == nil {
		t.Fatal("a changed token was accepted")
	}
	now.Add(int64(2 * time.Minute))
	if _, err := v.Verify(tok); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("after expiry: %v, want ErrExpired", err)
	}
	now.Add(-int64(2 * time.Minute))
	for i := range 200 {
		tk, err := auth.Issue(secret, "u"+strconv.Itoa(i), time.Minute, "iss", "aud")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tk); err != nil {
			t.Fatal(err)
		}
	}
	if n := auth.CachedTokens(v); n > 50 {
		t.Fatalf("%d tokens remembered; the bound is 50", n)
	}
}

// BenchmarkVerify compares verifying a token in full with finding it among
// the verified ones.
func BenchmarkVerify(b *testing.B) {
	tok, err := auth.Issue(secret, "user:42", time.Hour, "iss", "aud")
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{0, auth.DefaultCacheSize} {
		b.Run("cache="+strconv.Itoa(size), func(b *testing.B) {
			v := verifier(b, auth.Config{HS256Secret: secret}, auth.WithCacheSize(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHS256Rotation: during a rotation tokens signed with the new secret
// and with the previous ones verify; a token of any other secret does not,
// and once the previous secret is dropped its tokens stop verifying.
func TestHS256Rotation(t *testing.T) {
	newSecret := []byte(strings.Repeat("n", 32))
	other := []byte(strings.Repeat("o", 32))
	during := verifier(t, auth.Config{HS256Secret: newSecret, HS256Previous: [][]byte{secret}})
	after := verifier(t, auth.Config{HS256Secret: newSecret})
	oldTok, _ := auth.Issue(secret, "old", time.Minute, "iss", "aud")
	newTok, _ := auth.Issue(newSecret, "new", time.Minute, "iss", "aud")
	otherTok, _ := auth.Issue(other, "x", time.Minute, "iss", "aud")
	for _, tc := range []struct {
		v    *auth.Verifier
		tok  string
		want error
	}{
		{during, oldTok, nil}, {during, newTok, nil}, {during, otherTok, auth.ErrSignature},
		{after, newTok, nil}, {after, oldTok, auth.ErrSignature},
	} {
		_, err := tc.v.Verify(tc.tok)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Verify: %v, want %v", err, tc.want)
		}
	}
	if _, err := auth.NewVerifier(auth.Config{HS256Previous: [][]byte{secret}, Issuer: "i", Audience: "a"}); err == nil {
		t.Error("previous secrets without a current one were accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{HS256Secret: newSecret, HS256Previous: [][]byte{[]byte("short")}, Issuer: "i", Audience: "a"}); err == nil {
		t.Error("a short previous secret was accepted")
	}
}
