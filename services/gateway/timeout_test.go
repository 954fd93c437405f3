package gateway

import (
	"net/http"
	"testing"
	"time"
)

func TestClientTimeout(t *testing.T) {
	cases := []struct {
		connect, grpc string
		want          time.Duration
		ok            bool
	}{
		{"", "", 0, false},
		{"250", "", 250 * time.Millisecond, true},
		{"", "3S", 3 * time.Second, true},
		{"", "100m", 100 * time.Millisecond, true},
		{"", "2H", 2 * time.Hour, true},
		{"", "7M", 7 * time.Minute, true},
		{"", "5u", 5 * time.Microsecond, true},
		{"", "5n", 5, true},
		{"5000", "1S", time.Second, true},
		{"-1", "", 0, false},
		{"12345678901", "", 0, false},
		{"", "1s", 0, false},
		{"", "123456789S", 0, false},
		{"", "S", 0, false},
		{"", "99999999H", 1<<63 - 1, true},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.connect != "" {
			h.Set("Connect-Timeout-Ms", c.connect)
		}
		if c.grpc != "" {
			h.Set("Grpc-Timeout", c.grpc)
		}
		got, ok := clientTimeout(h)
		if got != c.want || ok != c.ok {
			t.Errorf("clientTimeout(%q, %q) = %s, %v; want %s, %v", c.connect, c.grpc, got, ok, c.want, c.ok)
		}
	}
}

// FuzzClientTimeout: no header value panics or yields a negative timeout.
func FuzzClientTimeout(f *testing.F) {
	for _, s := range []string{"", "1", "1S", "99999999H", "9999999999", "-5", "1x"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, connect, grpc string) {
		h := http.Header{"Connect-Timeout-Ms": {connect}, "Grpc-Timeout": {grpc}}
		if d, ok := clientTimeout(h); ok && d < 0 {
			t.Fatalf("negative timeout %s for %q, %q", d, connect, grpc)
		}
	})
}
