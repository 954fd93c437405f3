package testenv

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DefaultChromium is where Debian's chromium package puts the browser
// binary (the /usr/bin/chromium wrapper adds only noise). HGP_CHROMIUM
// overrides it.
const DefaultChromium = "/usr/lib/chromium/chromium"

// NodeTools returns the paths of node and npm. When one is missing the
// test fails under HGP_INTEGRATION=require and is skipped otherwise.
func NodeTools(t testing.TB) (node, npm string) {
	t.Helper()
	node, _, npm = tools(t, false)
	return node, npm
}

// BrowserTools returns the paths of node, npm and Chromium. When one is
// missing the test fails under HGP_INTEGRATION=require and is skipped
// otherwise. Browsers are never downloaded: Chromium comes from the system
// (apt-get install chromium; HGP_CHROMIUM overrides DefaultChromium).
func BrowserTools(t testing.TB) (node, npm, chromium string) {
	t.Helper()
	node, chromium, npm = tools(t, true)
	return node, npm, chromium
}

func tools(t testing.TB, browser bool) (node, chromium, npm string) {
	t.Helper()
	var missing []string
	node, errNode := exec.LookPath("node")
	if errNode != nil {
		missing = append(missing, "node")
	}
	npm, errNpm := exec.LookPath("npm")
	if errNpm != nil {
		missing = append(missing, "npm")
	}
	if browser {
		chromium = os.Getenv("HGP_CHROMIUM")
		if chromium == "" {
			chromium = DefaultChromium
		}
		if _, err := os.Stat(chromium); err != nil {
			missing = append(missing, "chromium ("+chromium+")")
		}
	}
	if len(missing) > 0 {
		msg := "needs " + strings.Join(missing, ", ") + " (Debian: apt-get install -y --no-install-recommends nodejs npm chromium)"
		if os.Getenv("HGP_INTEGRATION") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node, chromium, npm
}

// WebDeps makes sure web/node_modules holds the packages pinned by
// web/package-lock.json (npm ci when the installed tree is not that one)
// and returns the web directory.
func WebDeps(t testing.TB, npm, webDir string) string {
	t.Helper()
	dir, err := filepath.Abs(webDir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatalf("web lock file: %v", err)
	}
	// npm writes node_modules/.package-lock.json on install; its packages
	// equal the lock file's when the tree is current.
	if got, err := os.ReadFile(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && samePackages(got, want) {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

func samePackages(installed, lock []byte) bool {
	type tree struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	var a, b tree
	if json.Unmarshal(installed, &a) != nil || json.Unmarshal(lock, &b) != nil {
		return false
	}
	n := 0
	for name, p := range b.Packages {
		if name == "" {
			continue
		}
		n++
		if a.Packages[name].Version != p.Version {
			return false
		}
	}
	return n > 0
}

// BrowserRun runs a node script of web/ (for example test/browser.mjs)
// with env added to the environment. A line the script prints on stdout
// that names a key of control runs that function, and the string it
// returns is written to the script's stdin as one line (how the script
// asks the test to stop or start a server). A line "done <result>" gives
// the result returned. The script's stderr is logged. The test fails when
// the script exits non-zero, gives no result or runs longer than limit.
func BrowserRun(t testing.TB, node, webDir, script string, env []string, limit time.Duration, control map[string]func() string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), env...)
	stderr := &SyncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	var result string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "done "); ok {
			result = rest
			continue
		}
		f, ok := control[line]
		if !ok {
			t.Logf("%s: %s", script, line)
			continue
		}
		answer := f()
		if _, err := stdin.Write([]byte(answer + "\n")); err != nil {
			t.Errorf("answer %q to %s: %v", answer, script, err)
		}
	}
	_ = stdin.Close()
	err = cmd.Wait()
	t.Logf("%s output:\n%s", script, stderr.String())
	if err != nil {
		t.Fatalf("%s failed: %v (context: %v)", script, err, ctx.Err())
	}
	if result == "" {
		t.Fatalf("%s ended without a result", script)
	}
	return result
}

// WebScenario is what web/test/browser.mjs reads from HGP_WEB_TEST (see
// that file).
type WebScenario struct {
	Base        string            `json:"base"`
	Tokens      map[string]string `json:"tokens"`
	DevUser     string            `json:"devUser"`
	Namespace   string            `json:"namespace"`
	CORSPage    string            `json:"corsPage,omitempty"`
	ForeignPage string            `json:"foreignPage,omitempty"`
	Shots       string            `json:"shots"`
	Restart     bool              `json:"restart"`
	RequireLive bool              `json:"requireLive"`
	// RequireLiveCounts: WatchCounts must be served (rankings optional).
	RequireLiveCounts bool `json:"requireLiveCounts"`
}

// BrowserScenario runs web/test/browser.mjs with sc in Chromium; control
// answers its "stop" and "start" requests (see BrowserRun).
func BrowserScenario(t testing.TB, node, chromium, webDir string, sc WebScenario, control map[string]func() string) string {
	t.Helper()
	raw, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	return BrowserRun(t, node, webDir, "test/browser.mjs",
		[]string{"HGP_WEB_TEST=" + string(raw), "HGP_CHROMIUM=" + chromium}, 5*time.Minute, control)
}

// PageServer serves the built page (web/dist) from an origin of its own,
// its <meta name="hgp-api-base"> pointing at gatewayURL: a site hosting
// the page elsewhere than the gateway.
func PageServer(t testing.TB, distDir, gatewayURL string) *httptest.Server {
	t.Helper()
	index, err := os.ReadFile(filepath.Join(distDir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	const meta = `<meta name="hgp-api-base" content="">`
	if !strings.Contains(string(index), meta) {
		t.Fatalf("%s/index.html has no %s", distDir, meta)
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

// ForgedJWT is a well-formed HS256 JWT with subject sub that no gateway
// accepts (its signature is not one).
func ForgedJWT(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]string{"sub": sub})
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(claims) + "." + enc([]byte("not a signature"))
}
