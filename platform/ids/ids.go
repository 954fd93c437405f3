// Package ids holds the identifier rules the gateway and the backends must
// agree on: a subject the gateway accepts in a token is exactly a user id the
// counter accepts.
package ids

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
func ValidUserID(s string) bool {
	if len(s) == 0 || len(s) > MaxUserIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !IsIDChar(s[i]) {
			return false
		}
	}
	return true
}
