// Package smoke likes an item through a running gateway and reads it back;
// cmd/hgpsmoke runs it as the chart's `helm test` pod.
package smoke

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Config is what a smoke run needs.
type Config struct {
	GatewayURL string
	Secret     []byte
	Issuer     string
	Audience   string
}

// ConfigFrom reads the configuration through getenv, naming a missing variable.
func ConfigFrom(getenv func(string) string) (Config, error) {
	c := Config{
		GatewayURL: strings.TrimRight(getenv("HGP_SMOKE_GATEWAY_URL"), "/"),
		Secret:     []byte(getenv("HGP_JWT_HS256_SECRET")),
		Issuer:     getenv("HGP_JWT_ISSUER"),
		Audience:   getenv("HGP_JWT_AUDIENCE"),
	}
	if c.Issuer == "" {
		c.Issuer = "highgopress"
	}
	if c.Audience == "" {
		c.Audience = "highgopress-api"
	}
	var errs []error
	if c.GatewayURL == "" {
		errs = append(errs, errors.New("HGP_SMOKE_GATEWAY_URL is required"))
	}
	if len(c.Secret) < 32 {
		errs = append(errs, errors.New("HGP_JWT_HS256_SECRET must be at least 32 bytes"))
	}
	return c, errors.Join(errs...)
}

// Main runs one smoke check and returns the process exit status.
func Main(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := ConfigFrom(getenv)
	if err == nil {
		err = Run(ctx, http.DefaultClient, cfg, stdout)
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "hgpsmoke:", err)
		return 1
	}
	return 0
}

// Token mints an HS256 JWT for sub, valid for ttl.
func Token(secret []byte, sub, issuer, audience string, now time.Time, ttl time.Duration) (string, error) {
	enc := base64.RawURLEncoding
	header, err := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	if err != nil {
		return "", fmt.Errorf("token header: %w", err)
	}
	claims, err := json.Marshal(map[string]any{
		"sub": sub, "iss": issuer, "aud": []string{audience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// Run likes a fresh item as a fresh user and checks that GetCounts reads the
// like back (count 1, liked by the viewer).
func Run(ctx context.Context, client *http.Client, cfg Config, out io.Writer) error {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return fmt.Errorf("random id: %w", err)
	}
	user, item := "helm-test-"+hex.EncodeToString(suffix), "helm-test-"+hex.EncodeToString(suffix)
	token, err := Token(cfg.Secret, user, cfg.Issuer, cfg.Audience, time.Now(), 5*time.Minute)
	if err != nil {
		return err
	}
	ref := map[string]string{"namespace": "article", "id": item}

	var like struct {
		Changed bool   `json:"changed"`
		Count   string `json:"count"`
	}
	if err := call(ctx, client, cfg.GatewayURL+"/highgopress.counter.v1.CounterService/Like", token,
		map[string]any{"item": ref}, &like); err != nil {
		return fmt.Errorf("like: %w", err)
	}
	if !like.Changed || like.Count != "1" {
		return fmt.Errorf("like of a fresh item: got changed=%v count=%q, want changed=true count=\"1\"", like.Changed, like.Count)
	}

	var counts struct {
		Counts []struct {
			Likes       string `json:"likes"`
			ViewerLiked bool   `json:"viewerLiked"`
		} `json:"counts"`
	}
	if err := call(ctx, client, cfg.GatewayURL+"/highgopress.counter.v1.CounterService/GetCounts", token,
		map[string]any{"items": []any{ref}}, &counts); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if len(counts.Counts) != 1 || counts.Counts[0].Likes != "1" || !counts.Counts[0].ViewerLiked {
		return fmt.Errorf("read back of article/%s: got %+v, want likes 1 liked by %s", item, counts.Counts, user)
	}
	_, _ = fmt.Fprintf(out, "ok: %s liked article/%s through %s and read it back (likes=1)\n", user, item, cfg.GatewayURL)
	return nil
}

func call(ctx context.Context, client *http.Client, url, token string, body, into any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("decode %s: %w (body %s)", url, err, data)
	}
	return nil
}
