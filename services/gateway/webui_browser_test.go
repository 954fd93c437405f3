package gateway_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/services/gateway"
)

// TestBrowserPageRealMiddleware runs the browser scenario of
// web/test/browser.mjs against a gateway in front of a real counter on the
// real Redis (rate limits in Redis too). The restart it asks for stops the
// gateway and starts a new one on the same address; the counts survive
// (they are in Redis). Screenshots go to .run/browser/gateway/.
func TestBrowserPageRealMiddleware(t *testing.T) {
	node, npm, chromium := testenv.BrowserTools(t)
	redisAddr := testenv.RedisAddr(t)
	webDir := testenv.WebDeps(t, npm, "../../web")
	counter := startCounter(t, redisAddr, nil)

	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	gatewayURL := "http://" + addr
	listed := testenv.PageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
	foreign := testenv.PageServer(t, filepath.Join(webDir, "dist"), gatewayURL)
	vars := gatewayVars(map[string]string{
		"HGP_GATEWAY_ADDR":         addr,
		"HGP_GATEWAY_COUNTER_URLS": "http://" + counter.addr,
		"HGP_GATEWAY_CORS_ORIGINS": listed.URL,
		"HGP_REDIS_ADDR":           redisAddr,
		"HGP_REDIS_DB":             strconv.Itoa(counterDB),
		"HGP_RATE_KEY_PREFIX":      unique("hgp:gwtest:web"),
		"HGP_RATE_WRITE_USER":      "10-S",
	})
	start := func() func() {
		r := config.FromMap(vars)
		cfg := gateway.ConfigFrom(r)
		if err := r.Err(); err != nil {
			t.Fatalf("gateway config: %v", err)
		}
		logger := testLogger(t, "gateway")
		g, err := gateway.New(logger, cfg)
		if err != nil {
			t.Fatalf("gateway.New: %v", err)
		}
		comp := g.Component()
		var ln net.Listener
		// The address was free a moment ago (or held by the gateway just
		// stopped): wait until it can be bound.
		testenv.EventuallyNoError(t, 30*time.Second, "listen on "+addr, func() error {
			ln, err = net.Listen("tcp", addr)
			return err
		})
		comp.Listener = ln
		run := testenv.Background(t, func(ctx context.Context) error { return bootstrap.Run(ctx, logger, comp) })
		return func() {
			if err := run.Stop(t); err != nil {
				t.Errorf("gateway stopped with %v", err)
			}
		}
	}
	stop := start()

	shots, err := filepath.Abs("../../.run/browser/gateway")
	if err != nil {
		t.Fatal(err)
	}
	dev := unique("web-dev") // a user of this run: no followers yet
	sc := testenv.WebScenario{
		Base: gatewayURL,
		Tokens: map[string]string{
			"dev": token(t, dev), "other": token(t, unique("web-other")), "third": token(t, unique("web-third")),
			"fourth": token(t, unique("web-fourth")), "forged": testenv.ForgedJWT(`<img src=x onerror="window.__xss=2">`),
		},
		DevUser: dev,
		// A namespace of this run: the ranking and the counts start empty.
		Namespace:   strings.ReplaceAll(fmt.Sprintf("web%d", time.Now().UnixNano()%1e12), ":", ""),
		CORSPage:    listed.URL + "/",
		ForeignPage: foreign.URL + "/",
		Shots:       shots,
		Restart:     true,
		// A real counter serves WatchCounts; no analytics runs here.
		RequireLiveCounts: true,
	}
	result := testenv.BrowserScenario(t, node, chromium, webDir, sc, map[string]func() string{
		"stop":  func() string { stop(); return "stopped" },
		"start": func() string { stop = start(); return "started" },
	})
	stop()
	t.Logf("browser result: %s", result)
}
