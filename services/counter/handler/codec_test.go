package handler

import (
	"strings"
	"testing"
	"unicode/utf8"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
)

// FuzzDecodeErrors: whatever a client sends, decoding never panics and an
// error message is valid UTF-8, bounded, and free of Go type names and
// parser prefixes.
func FuzzDecodeErrors(f *testing.F) {
	for _, s := range []string{`{"item":5}`, `{"delta":"abc"}`, `{"item":`, "", "\xff", `{"item":{"id":"` + strings.Repeat("é", 200) + `"}}`, `{"delta":"` + strings.Repeat("\x01", 300) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []interface{ Unmarshal([]byte, any) error }{jsonCodec{name: "json"}, protoCodec{}} {
			err := c.Unmarshal(data, &counterv1.IncrementRequest{})
			if err == nil {
				continue
			}
			msg := err.Error()
			if !utf8.ValidString(msg) {
				t.Fatalf("message is not UTF-8: %q", msg)
			}
			if len(msg) > 400 {
				t.Fatalf("message of %d bytes: %q", len(msg), msg)
			}
			for _, bad := range []string{"proto:", "counterv1", "unmarshal into"} {
				if strings.Contains(msg, bad) {
					t.Fatalf("message %q contains %q", msg, bad)
				}
			}
		}
	})
}
