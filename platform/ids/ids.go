// Package ids holds the identifier rules the gateway and the backends must
// agree on: a subject the gateway accepts in a token is exactly a user id the
// counter accepts.
package ids

import (
	"fmt"
	"unicode/utf8"
)

// MaxUserIDLen is the longest user id, in bytes.
const MaxUserIDLen = 64

// UserIDAlphabet describes the characters of a user id, for error messages.
const UserIDAlphabet = "[A-Za-z0-9_.:-]"

// IsIDChar reports whether c may appear in a user or item id: no Redis key
// pattern or hash-tag characters, no whitespace.
func IsIDChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '_', c == '.', c == ':', c == '-':
		return true
	}
	return false
}

// ValidUserID reports whether s is 1-MaxUserIDLen characters of UserIDAlphabet.
func ValidUserID(s string) bool { return CheckUserID(s) == nil }

// CheckUserID returns nil when s is a valid user id, otherwise an error
// saying why in the API's terms (the rule, and the offending character
// named by DescribeAt).
func CheckUserID(s string) error {
	return Check(s, 1, MaxUserIDLen, IsIDChar, UserIDAlphabet)
}

// Check returns nil when s is min-max bytes, each accepted by ok (an ASCII
// alphabet described by alphabet), otherwise an error naming the rule and
// the first offending character: "must be 1-64 characters of
// [A-Za-z0-9_.:-], got 65 bytes", "character 'é' (U+00E9) at offset 1 is
// not allowed: must be ...". Offsets are byte offsets into s.
func Check(s string, min, max int, ok func(byte) bool, alphabet string) error {
	if len(s) < min || len(s) > max {
		if s == "" {
			return fmt.Errorf("required: %d-%d characters of %s", min, max, alphabet)
		}
		return fmt.Errorf("must be %d-%d characters of %s, got %d bytes", min, max, alphabet, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return fmt.Errorf("%s at offset %d is not allowed: must be %d-%d characters of %s", DescribeAt(s, i), i, min, max, alphabet)
		}
	}
	return nil
}

// DescribeAt names the character that starts at byte offset i of s, for
// error messages: the whole rune (not its first byte), quoted with Go
// escapes for anything unprintable, and its code point — "character 'é'
// (U+00E9)", "character '\x00' (U+0000)". A byte that does not start valid
// UTF-8 is named as a byte: "byte 0xff (not UTF-8)".
func DescribeAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x (not UTF-8)", s[i])
	}
	return fmt.Sprintf("character %q (%U)", r, r)
}
