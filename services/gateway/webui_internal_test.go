package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func testWebUI(t *testing.T) *webUI {
	t.Helper()
	ui, err := newWebUI(fstest.MapFS{
		"index.html":                {Data: []byte(`<!doctype html><script type="module" src="assets/main-ABCD1234.js"></script>`)},
		"assets/main-ABCD1234.js":   {Data: []byte(`console.log(1)`)},
		"assets/style-ZZZZ9999.css": {Data: []byte(`body{}`)},
		"assets/plain.js":           {Data: []byte(`1`)},
		"assets/notes.txt":          {Data: []byte(`not served`)},
	}, []string{"https://api.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return ui
}

// TestWebUIHeaders: content types, cache headers (hashed assets immutable,
// the page and unhashed files revalidated), the CSP on the page, 404 for
// anything else, conditional GET and HEAD.
func TestWebUIHeaders(t *testing.T) {
	ui := testWebUI(t)
	for _, c := range []struct {
		path         string
		status       int
		ctype, cache string
		csp          bool
	}{
		{"/", 200, "text/html; charset=utf-8", "no-cache", true},
		{"/assets/main-ABCD1234.js", 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", false},
		{"/assets/style-ZZZZ9999.css", 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", false},
		{"/assets/plain.js", 200, "text/javascript; charset=utf-8", "no-cache", false},
		{"/assets/notes.txt", 404, "text/plain; charset=utf-8", "no-cache", false},
		{"/assets/../index.html", 404, "text/plain; charset=utf-8", "no-cache", false},
		{"/index.html", 404, "text/plain; charset=utf-8", "no-cache", false},
	} {
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		h := rec.Header()
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d", c.path, rec.Code, c.status)
		}
		if h.Get("Content-Type") != c.ctype || h.Get("Cache-Control") != c.cache || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: type %q cache %q nosniff %q", c.path, h.Get("Content-Type"), h.Get("Cache-Control"), h.Get("X-Content-Type-Options"))
		}
		if csp := h.Get("Content-Security-Policy"); (csp != "") != c.csp {
			t.Errorf("%s: CSP %q", c.path, csp)
		}
	}

	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self' https://api.example.com;", "frame-ancestors 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}

	etag := rec.Header().Get("ETag")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	ui.ServeHTTP(rec, req)
	if etag == "" || rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET with ETag %q: %d", etag, rec.Code)
	}
	rec = httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/assets/main-ABCD1234.js", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "14" {
		t.Errorf("HEAD: %d, body %d bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

// TestWebUIWithoutIndex: a build without the page is refused (the gateway
// then serves the API alone).
func TestWebUIWithoutIndex(t *testing.T) {
	if _, err := newWebUI(fstest.MapFS{"assets/a-ABCD1234.js": {Data: []byte("1")}}, nil); err == nil {
		t.Fatal("no error without index.html")
	}
}
