package gateway_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

func claims(modify ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "alice",
		"iss": issuer,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(),
	}
	for _, m := range modify {
		m(c)
	}
	return c
}

func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned hand-crafts a token with {"alg":"none"} and an empty signature.
func unsigned(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(body) + "."
}

func publicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func rsOnly(c *gateway.Config) { c.Auth.HS256Secret = nil }

// TestTokensRejected: every bad credential is Unauthenticated, on writes and
// reads alike, with a message saying why, and the backend sees nothing.
func TestTokensRejected(t *testing.T) {
	k := rsaKeys(t)
	both := newEnv(t)       // HS256 and RS256 configured
	rs := newEnv(t, rsOnly) // RS256 only
	trustedPEM := publicPEM(t, &k.trusted.PublicKey)
	hs := []byte(hsSecret)
	set := func(key string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[key] = v } }
	del := func(key string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, key) } }
	ago := func(d time.Duration) int64 { return time.Now().Add(-d).Unix() }
	ahead := func(d time.Duration) int64 { return time.Now().Add(d).Unix() }

	cases := []struct {
		name   string
		env    *env
		authz  []string // Authorization header values
		reason error
	}{
		{"garbled", both, []string{"Bearer not-a-token"}, auth.ErrMalformed},
		{"garbled segments", both, []string{"Bearer a.b.c"}, auth.ErrMalformed},
		{"expired", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("exp", ago(2*time.Minute))))}, auth.ErrExpired},
		{"not yet valid", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("nbf", ahead(2*time.Minute))))}, auth.ErrNotYetValid},
		{"issued in the future", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("iat", ahead(2*time.Minute))))}, auth.ErrIssuedLater},
		{"no expiry", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(del("exp")))}, auth.ErrNoExpiry},
		{"alg none", both, []string{"Bearer " + unsigned(t, claims())}, auth.ErrAlgorithm},
		{"alg none, RS256 only", rs, []string{"Bearer " + unsigned(t, claims())}, auth.ErrAlgorithm},
		{"HS256 wrong secret", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("w", 40)), claims())}, auth.ErrSignature},
		{"HS256 when only RS256 configured", rs, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims())}, auth.ErrAlgorithm},
		{"HS256 keyed with the RSA public key, RS256 only", rs, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, trustedPEM, claims())}, auth.ErrAlgorithm},
		{"HS256 keyed with the RSA public key", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, trustedPEM, claims())}, auth.ErrSignature},
		{"HS512", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS512, hs, claims())}, auth.ErrAlgorithm},
		{"RS256 other key", both, []string{"Bearer " + sign(t, jwt.SigningMethodRS256, k.other, claims())}, auth.ErrSignature},
		{"RS256 other key, RS256 only", rs, []string{"Bearer " + sign(t, jwt.SigningMethodRS256, k.other, claims())}, auth.ErrSignature},
		{"RS512 trusted key", rs, []string{"Bearer " + sign(t, jwt.SigningMethodRS512, k.trusted, claims())}, auth.ErrAlgorithm},
		{"PS256 trusted key", rs, []string{"Bearer " + sign(t, jwt.SigningMethodPS256, k.trusted, claims())}, auth.ErrAlgorithm},
		{"wrong issuer", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("iss", "evil")))}, auth.ErrIssuer},
		{"no issuer", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(del("iss")))}, auth.ErrIssuer},
		{"wrong audience", both, []string{"Bearer " + sign(t, jwt.SigningMethodRS256, k.trusted, claims(set("aud", []string{"other-api"})))}, auth.ErrAudience},
		{"no audience", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(del("aud")))}, auth.ErrAudience},
		{"no subject", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(del("sub")))}, auth.ErrSubject},
		{"invalid subject", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("sub", "alice bob")))}, auth.ErrSubject},
		{"subject too long", both, []string{"Bearer " + sign(t, jwt.SigningMethodHS256, hs, claims(set("sub", strings.Repeat("a", 65))))}, auth.ErrSubject},
		{"basic scheme", both, []string{"Basic YWxpY2U6cHc="}, auth.ErrScheme},
		{"empty bearer", both, []string{"Bearer "}, auth.ErrScheme},
		{"two headers", both, []string{"Bearer " + token(t, "alice"), "Bearer " + token(t, "bob")}, auth.ErrScheme},
		{"too long", both, []string{"Bearer " + strings.Repeat("a", auth.MaxTokenLen+1)}, auth.ErrTooLong},
	}
	ctx := context.Background()
	for _, p := range rpctest.Protocols {
		for _, tc := range cases {
			t.Run(p.Name+"/"+tc.name, func(t *testing.T) {
				h := http.Header{"Authorization": tc.authz}
				cs, fs := clients(tc.env, tc.env.client, p, withHeaders(h))
				tc.env.backend.reset()
				_, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("t")}))
				wantReason(t, err, tc.reason)
				_, err = cs.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Items: []*counterv1.ItemRef{item("t")}}))
				wantReason(t, err, tc.reason)
				_, err = fs.GetUserStats(ctx, connect.NewRequest(&counterv1.GetUserStatsRequest{UserIds: []string{"bob"}}))
				wantReason(t, err, tc.reason)
				if n := tc.env.backend.hits.Load(); n != 0 {
					t.Fatalf("backend received %d requests", n)
				}
			})
		}
	}
}

func wantReason(t *testing.T, err error, reason error) {
	t.Helper()
	var ce *connect.Error
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !asConnect(err, &ce) || ce.Message() != reason.Error() {
		t.Fatalf("got %v, want unauthenticated: %v", err, reason)
	}
}

func asConnect(err error, target **connect.Error) bool {
	ce, ok := err.(*connect.Error)
	if ok {
		*target = ce
	}
	return ok
}

// TestTokensAccepted: valid HS256 and RS256 tokens, and clock skew within
// the leeway.
func TestTokensAccepted(t *testing.T) {
	k := rsaKeys(t)
	both := newEnv(t)
	rs := newEnv(t, rsOnly)
	hs := []byte(hsSecret)
	cases := []struct {
		name string
		env  *env
		tok  string
	}{
		{"HS256", both, sign(t, jwt.SigningMethodHS256, hs, claims())},
		{"RS256", both, sign(t, jwt.SigningMethodRS256, k.trusted, claims())},
		{"RS256 only", rs, sign(t, jwt.SigningMethodRS256, k.trusted, claims())},
		{"audience list", both, sign(t, jwt.SigningMethodHS256, hs, claims(func(c jwt.MapClaims) { c["aud"] = []string{"x", audience} }))},
		{"expired within leeway", both, sign(t, jwt.SigningMethodHS256, hs, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() }))},
		{"nbf within leeway", both, sign(t, jwt.SigningMethodHS256, hs, claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(10 * time.Second).Unix() }))},
		{"Issue", both, token(t, "alice")},
	}
	for _, p := range rpctest.Protocols {
		for _, tc := range cases {
			t.Run(p.Name+"/"+tc.name, func(t *testing.T) {
				cs, _ := clients(tc.env, tc.env.client, p, withHeaders(bearer(tc.tok)))
				tc.env.backend.reset()
				if _, err := cs.Like(context.Background(), connect.NewRequest(&counterv1.LikeRequest{Item: item("ok")})); err != nil {
					t.Fatalf("Like: %v", err)
				}
				calls, _ := tc.env.backend.recorded()
				if len(calls) != 1 || calls[0].Actor != "alice" {
					t.Fatalf("backend saw %+v", calls)
				}
			})
		}
	}
}
