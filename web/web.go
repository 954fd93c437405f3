// Package web holds the browser client's built assets (dist/, produced by
// `npm run build` from src/ and committed, so building Go never needs
// Node). The gateway serves them at / (services/gateway/webui.go).
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Assets returns the built page: index.html at the root and the hashed
// scripts and styles under assets/.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only on an invalid path; "dist" is valid.
		return dist
	}
	return sub
}
