package gateway_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/highgopress/highgopress/platform/testenv"
)

// TestWebBundleUpToDate: the page the gateway embeds (web/dist, committed
// so building Go never needs Node) is exactly what `npm run build` makes
// from web/src, and web/src type-checks under strict TypeScript. Fails
// with the files that differ: rebuild with `cd web && npm run build` and
// commit web/dist.
func TestWebBundleUpToDate(t *testing.T) {
	node, npm := testenv.NodeTools(t)
	dir := testenv.WebDeps(t, npm, "../../web")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{filepath.Join("node_modules", "typescript", "bin", "tsc"), "--noEmit", "-p", "."},
		{"build.mjs", "--check"},
	} {
		cmd := exec.CommandContext(ctx, node, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}
