package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/highgopress/highgopress/web"
)

// The browser client (web/), built and embedded into the gateway: its page
// at / and its hashed scripts and styles under /assets/. Everything else
// (POST and GET of procedures) reaches the gateway's RPC handling as
// before.

// webContentTypes are the types of the files the build produces; a file of
// any other kind is not served.
var webContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	".map":  "application/json",
}

// hashedAsset matches the names the build gives its outputs
// (name-HASH.ext): their content never changes under that name.
var hashedAsset = regexp.MustCompile(`^[A-Za-z0-9_.]+-[A-Z0-9]{8,}\.[a-z]+$`)

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// webUI serves the embedded page.
type webUI struct {
	files map[string]webFile // by URL path: "/" and "/assets/..."
	csp   string
}

type webFile struct {
	body        []byte
	contentType string
	cache       string
	etag        string
}

// newWebUI reads the built page from assets. connectSrc lists origins the
// page may call besides its own (Content-Security-Policy connect-src).
func newWebUI(assets fs.FS, connectSrc []string) (*webUI, error) {
	u := &webUI{files: map[string]webFile{}, csp: contentSecurityPolicy(connectSrc)}
	err := fs.WalkDir(assets, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := webContentTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(assets, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		sum := sha256.Sum256(body)
		f := webFile{body: body, contentType: ct, cache: cacheRevalidate, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		urlPath := "/" + name
		switch {
		case name == "index.html":
			urlPath = "/"
		case strings.HasPrefix(name, "assets/") && hashedAsset.MatchString(path.Base(name)):
			f.cache = cacheImmutable
		}
		u.files[urlPath] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web assets: %w", err)
	}
	if _, ok := u.files["/"]; !ok {
		return nil, fmt.Errorf("web assets: no index.html (build web/ with npm run build)")
	}
	return u, nil
}

// contentSecurityPolicy allows the page's own scripts, styles and API
// calls only: no inline script or style, no plugins, no framing, and
// Trusted Types enforced so no string can become HTML.
func contentSecurityPolicy(connectSrc []string) string {
	connect := append([]string{"'self'"}, connectSrc...)
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"connect-src " + strings.Join(connect, " "),
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
		"require-trusted-types-for 'script'",
		"trusted-types 'none'",
	}, "; ")
}

func (u *webUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	f, ok := u.files[r.URL.Path]
	if !ok {
		h.Set("Cache-Control", cacheRevalidate)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", f.cache)
	h.Set("ETag", f.etag)
	if f.contentType == webContentTypes[".html"] {
		h.Set("Content-Security-Policy", u.csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// mountWebUI serves the embedded page at / and its assets under /assets/
// (GET and HEAD only: procedures are POSTed, or GET under their own
// paths). A build without the page logs and serves the API alone.
func (g *Gateway) mountWebUI() {
	ui, err := newWebUI(web.Assets(), nil)
	if err != nil {
		g.logger.Error("web page not served", "err", err)
		return
	}
	g.server.Handle("GET /{$}", ui)
	g.server.Handle("GET /assets/", ui)
}
