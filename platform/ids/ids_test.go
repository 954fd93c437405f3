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
