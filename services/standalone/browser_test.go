package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

// webScenario is the configuration web/test/browser.mjs reads from
// HGP_WEB_TEST.
type webScenario struct {
	Base        string            `json:"base"`
	Tokens      map[string]string `json:"tokens"`
	DevUser     string            `json:"devUser"`
	Namespace   string            `json:"namespace"`
	CORSPage    string            `json:"corsPage,omitempty"`
	ForeignPage string            `json:"foreignPage,omitempty"`
	Shots       string            `json:"shots"`
	Restart     bool              `json:"restart"`
	RequireLive bool              `json:"requireLive"`
}

// pageServer serves the built page (web/dist) from its own origin, its
// <meta name="hgp-api-base"> pointing at gatewayURL: a site hosting the
// page elsewhere than the gateway.
func pageServer(t *testing.T, distDir, gatewayURL string) *httptest.Server {
	t.Helper()
	index, err := os.ReadFile(filepath.Join(distDir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	const meta = `<meta name="hgp-api-base" content="">`
	if !strings.Contains(string(index), meta) {
		t.Fatalf("web/dist/index.html has no %s", meta)
	}
	page := strings.Replace(string(index), meta, `<meta name="hgp-api-base" content="`+gatewayURL+`">`, 1)
	files := http.FileServer(http.Dir(distDir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(page))
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// forgedToken is a well-formed JWT the gateway refuses (bad signature)
// whose subject is markup.
func forgedToken() string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc([]byte(`{"sub":"<img src=x onerror=\"window.__xss=2\">","iss":"highgopress","aud":"highgopress-api"}`)) + "." +
		enc([]byte("not a signature"))
}

// TestBrowserPage drives the page in a real Chromium against the standalone
// binary (web/test/browser.mjs): sign-in, likes with live counts and
// rankings, another user's like within 1 s, rate limit, signed-out and
// markup cases, a server restart the page recovers from by itself, and the
// page served from a listed and from an unlisted origin. Screenshots go to
// .run/browser/standalone/; any console error fails the test.
func TestBrowserPage(t *testing.T) {
	node, npm, chromium := testenv.BrowserTools(t)
	webDir := testenv.WebDeps(t, npm, "../../web")
	bin := buildStandalone(t)

	secretBytes := make([]byte, 32)
	if _, err := rand.Read(secretBytes); err != nil {
		t.Fatal(err)
	}
	secret := hex.EncodeToString(secretBytes)
	issue := func(sub string) string {
		tok, err := auth.Issue([]byte(secret), sub, time.Hour, gateway.DefaultIssuer, gateway.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// The gateway's address is fixed so the restarted server answers the
	// page at the same place; the JWT secret too, so the token stays valid.
	gatewayURL := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	listed := pageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
	foreign := pageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
	env := []string{
		"HGP_GATEWAY_ADDR=" + strings.TrimPrefix(gatewayURL, "http://"),
		"HGP_JWT_HS256_SECRET=" + secret,
		"HGP_GATEWAY_CORS_ORIGINS=" + listed.URL,
		"HGP_RATE_WRITE_USER=10-S",
	}
	proc := startStandalone(t, bin, env...)
	if proc.GatewayURL != gatewayURL {
		t.Fatalf("gateway at %s, want %s", proc.GatewayURL, gatewayURL)
	}
	// The banner's link opens the page signed in as the dev user.
	if want := gatewayURL + "/#token=" + proc.Token; !strings.Contains(proc.stdout.String(), want) {
		t.Errorf("banner does not print the page link %s:\n%s", want, proc.stdout)
	}

	shots, err := filepath.Abs("../../.run/browser/standalone")
	if err != nil {
		t.Fatal(err)
	}
	sc := webScenario{
		Base: gatewayURL,
		Tokens: map[string]string{
			"dev": proc.Token, "other": issue("web-other"), "third": issue("web-third"), "fourth": issue("web-fourth"), "forged": forgedToken(),
		},
		DevUser:     DevUser,
		Namespace:   fmt.Sprintf("web%d", time.Now().UnixNano()%1e9),
		CORSPage:    listed.URL + "/",
		ForeignPage: foreign.URL + "/",
		Shots:       shots,
		Restart:     true,
	}
	raw, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	result := testenv.BrowserRun(t, node, webDir, "test/browser.mjs",
		[]string{"HGP_WEB_TEST=" + string(raw), "HGP_CHROMIUM=" + chromium}, 5*time.Minute,
		map[string]func() string{
			"stop": func() string { proc.Stop(t); return "stopped" },
			"start": func() string {
				proc = startStandalone(t, bin, env...)
				return "started"
			},
		})
	t.Logf("browser result: %s", result)
}
