package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

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
	listed := testenv.PageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
	foreign := testenv.PageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
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
	sc := testenv.WebScenario{
		Base: gatewayURL,
		Tokens: map[string]string{
			"dev": proc.Token, "other": issue("web-other"), "third": issue("web-third"), "fourth": issue("web-fourth"), "forged": testenv.ForgedJWT(`<img src=x onerror="window.__xss=2">`),
		},
		DevUser:     DevUser,
		Namespace:   fmt.Sprintf("web%d", time.Now().UnixNano()%1e9),
		CORSPage:    listed.URL + "/",
		ForeignPage: foreign.URL + "/",
		Shots:       shots,
		Restart:     true,
		// Every service runs embedded: rankings and counts must be live.
		RequireLive: true,
	}
	result := testenv.BrowserScenario(t, node, chromium, webDir, sc,
		map[string]func() string{
			"stop": func() string { proc.Stop(t); return "stopped" },
			"start": func() string {
				proc = startStandalone(t, bin, env...)
				return "started"
			},
		})
	t.Logf("browser result: %s", result)
}
