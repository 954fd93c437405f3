package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// buildFlags is how every service binary is built: by this test module
// (TestServiceBinaries) and by the Dockerfile, which TestDockerfile holds to it.
var buildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// TestDockerfile parses build/Dockerfile with BuildKit's own parser and checks
// a pinned Go builder, a static build with the flags the binaries test
// proves, a distroless nonroot runtime, a numeric user and OCI labels.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, "build", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	ast, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, w := range ast.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	if len(stages) != 2 {
		t.Fatalf("want a builder and a runtime stage, got %d stages", len(stages))
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}

	builder, runtime := stages[0], stages[1]
	if base := expand(builder.BaseName); !regexp.MustCompile(`^golang:1\.\d+\.\d+(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$`).MatchString(base) {
		t.Errorf("builder %q is not a Go image pinned to a patch version", base)
	}
	var build string
	for _, c := range builder.Commands {
		if r, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
			build = strings.Join(r.CmdLine, " ")
		}
	}
	if build == "" {
		t.Fatal("builder stage has no `go build`")
	}
	for _, want := range append([]string{"CGO_ENABLED=0", "${CMD_PATH}"}, buildFlags[:2]...) {
		if !strings.Contains(build, want) {
			t.Errorf("go build command %q lacks %s", build, want)
		}
	}
	if !strings.Contains(build, `-ldflags="-s -w"`) {
		t.Errorf("go build command %q lacks -ldflags=\"-s -w\"", build)
	}

	if base := expand(runtime.BaseName); !regexp.MustCompile(`^(gcr\.io/distroless/static(-debian\d+)?:nonroot(@sha256:[0-9a-f]{64})?|scratch)$`).MatchString(base) {
		t.Errorf("runtime image %q is not distroless/static nonroot or scratch", base)
	}
	var user string
	labels := map[string]bool{}
	var entrypoint []string
	for _, c := range runtime.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = true
			}
		case *instructions.EntrypointCommand:
			entrypoint = c.CmdLine
		case *instructions.RunCommand:
			t.Errorf("runtime stage runs %v: it has no shell", c.CmdLine)
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user) {
		t.Errorf("USER %q is not a numeric non-root user", user)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision", "created"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("OCI label org.opencontainers.image.%s missing", l)
		}
	}
	if len(entrypoint) != 1 || !strings.HasPrefix(entrypoint[0], "/") {
		t.Errorf("ENTRYPOINT %v is not the exec form of one binary", entrypoint)
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, want := range []string{".git", ".run", ".bin"} {
		if !strings.Contains("\n"+string(ignore)+"\n", "\n"+want+"\n") {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}
