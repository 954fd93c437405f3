package ids

import (
	"strings"
	"testing"
)

func TestValidUserID(t *testing.T) {
	for _, ok := range []string{"u1", "alice.b:c-d_e", strings.Repeat("x", MaxUserIDLen)} {
		if !ValidUserID(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxUserIDLen+1), "a b", "a{b}", "a*", "a?", "a[b]", "ü", "a\nb"} {
		if ValidUserID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCheckNamesTheCharacter: a non-ASCII character is named as the whole
// rune at its byte offset (not as the first byte of its encoding read as
// Latin-1, which turned "héllo" into "character 'Ã' at offset 1"),
// unprintable characters are escaped, and invalid UTF-8 is named as a byte.
func TestCheckNamesTheCharacter(t *testing.T) {
	cases := []struct{ in, want string }{
		{"héllo", `character 'é' (U+00E9) at offset 1 is not allowed: must be 1-64 characters of [A-Za-z0-9_.:-]`},
		{"ab€", `character '€' (U+20AC) at offset 2 is not allowed`},
		{"a\x00", `character '\x00' (U+0000) at offset 1 is not allowed`},
		{"a\u200bb", `character '\u200b' (U+200B) at offset 1 is not allowed`},
		{"a\nb", `character '\n' (U+000A) at offset 1 is not allowed`},
		{"ok\xffx", `byte 0xff (not UTF-8) at offset 2 is not allowed`},
		{"a b", `character ' ' (U+0020) at offset 1 is not allowed`},
		{"", `required: 1-64 characters of [A-Za-z0-9_.:-]`},
		{strings.Repeat("é", 33), `must be 1-64 characters of [A-Za-z0-9_.:-], got 66 bytes`},
	}
	for _, c := range cases {
		err := CheckUserID(c.in)
		if err == nil {
			t.Errorf("CheckUserID(%q) = nil", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckUserID(%q) = %q; want it to contain %q", c.in, err.Error(), c.want)
		}
	}
	if err := CheckUserID("alice.b:c-d_e"); err != nil {
		t.Errorf("valid id rejected: %v", err)
	}
}
