package ratelimit

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.168.1.1", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		remote string
		xff    []string
		xreal  string
		want   string
	}{
		{"plain socket peer", "203.0.113.7:5555", nil, "", "203.0.113.7"},
		{"untrusted peer forges XFF", "203.0.113.7:5555", []string{"1.2.3.4"}, "", "203.0.113.7"},
		{"untrusted peer forges X-Real-IP", "203.0.113.7:5555", nil, "1.2.3.4", "203.0.113.7"},
		{"trusted proxy: right-most untrusted entry", "10.1.2.3:80", []string{"198.51.100.9"}, "", "198.51.100.9"},
		{"trusted proxy: client-supplied left part ignored", "10.1.2.3:80", []string{"1.2.3.4, 198.51.100.9"}, "", "198.51.100.9"},
		{"chain of trusted proxies", "10.1.2.3:80", []string{"1.2.3.4, 198.51.100.9, 192.168.1.1, 10.9.9.9"}, "", "198.51.100.9"},
		{"several XFF header lines", "10.1.2.3:80", []string{"1.2.3.4", "198.51.100.9, 10.0.0.5"}, "", "198.51.100.9"},
		{"trusted proxy, X-Real-IP ignored", "10.1.2.3:80", nil, "1.2.3.4", "10.1.2.3"},
		{"trusted proxy without XFF", "10.1.2.3:80", nil, "", "10.1.2.3"},
		{"garbage entry stops at last trusted hop", "10.1.2.3:80", []string{"198.51.100.9, garbage, 10.0.0.7"}, "", "10.0.0.7"},
		{"all entries trusted", "10.1.2.3:80", []string{"10.0.0.1, 10.0.0.2"}, "", "10.0.0.1"},
		{"XFF with port and IPv6", "10.1.2.3:80", []string{"[2001:db8::1]:443"}, "", "2001:db8::1"},
		{"IPv4-mapped trusted range", "[::ffff:172.16.0.9]:80", []string{"198.51.100.10"}, "", "198.51.100.10"},
		{"IPv6 peer", "[2001:db8::5]:1234", []string{"1.2.3.4"}, "", "2001:db8::5"},
		{"non-IP remote", "@unix", nil, "", "invalid IP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPost, "http://gw/x.v1.S/M", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if c.xreal != "" {
				r.Header.Set("X-Real-IP", c.xreal)
			}
			if got := ClientIP(r, trusted).String(); got != c.want {
				t.Fatalf("ClientIP = %s, want %s", got, c.want)
			}
		})
	}
}

func TestIPKeyGroupsIPv6By64(t *testing.T) {
	a := ipKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := ipKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	c := ipKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatalf("ipKey /64 grouping wrong: %s %s %s", a, b, c)
	}
	if ipKey(netip.MustParseAddr("1.2.3.4")) != "1.2.3.4" || ipKey(netip.Addr{}) != "unknown" {
		t.Fatal("ipKey v4/unknown")
	}
}

func TestParseTrustedProxies(t *testing.T) {
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
	if _, err := ParseTrustedProxies([]string{"nope"}); err == nil {
		t.Fatal("bad address accepted")
	}
	p, err := ParseTrustedProxies([]string{" 10.0.0.1/8 ", "", "::1"})
	if err != nil || len(p) != 2 || p[0].String() != "10.0.0.0/8" || p[1].String() != "::1/128" {
		t.Fatalf("got %v %v", p, err)
	}
}

// FuzzClientIP: no header or address panics the parser, and the
// result never comes from XFF when the peer is untrusted.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:80", "1.2.3.4, 5.6.7.8")
	f.Add("[::1]:1", "[::1]:2,,,")
	f.Add("garbage", "\x00,[,]")
	trusted, _ := ParseTrustedProxies([]string{"10.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		got := ClientIP(r, trusted)
		peer := parseAddr(remote)
		if !isTrusted(peer, trusted) && got != peer {
			t.Fatalf("untrusted peer %q: got %v from XFF %q", remote, got, xff)
		}
		_ = ipKey(got)
	})
}
