package tracecontext_test

import (
	"context"
	"testing"

	"github.com/highgopress/highgopress/platform/tracecontext"
)

func TestNormalize(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for in, want := range map[string]string{
		good:             good,
		" " + good + " ": good,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": good,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": "",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       "",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":       "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":       "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":       "",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":        "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":          "",
		"":            "",
		"garbage":     "",
		"00-zz-yy-01": "",
	} {
		got, ok := tracecontext.Normalize(in)
		if got != want || ok != (want != "") {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestNewIsValidAndFresh(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tp := tracecontext.New()
		if !tracecontext.Valid(tp) {
			t.Fatalf("New() = %q is not valid", tp)
		}
		if seen[tp] {
			t.Fatalf("New() repeated %q", tp)
		}
		seen[tp] = true
	}
	if tp := tracecontext.FromHeader("nonsense"); !tracecontext.Valid(tp) {
		t.Fatalf("FromHeader(nonsense) = %q", tp)
	}
	ctx := tracecontext.With(context.Background(), "x")
	if tracecontext.From(ctx) != "x" || tracecontext.From(context.Background()) != "" {
		t.Fatal("context round trip failed")
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("-")
	f.Fuzz(func(t *testing.T, h string) {
		if tp, ok := tracecontext.Normalize(h); ok {
			if again, ok2 := tracecontext.Normalize(tp); !ok2 || again != tp {
				t.Fatalf("Normalize(%q) = %q is not stable", h, tp)
			}
		}
	})
}
