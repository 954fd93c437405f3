package config

import (
	"strings"
	"testing"
	"time"
)

func TestReaderCollectsErrorsNamingVariables(t *testing.T) {
	r := FromMap(map[string]string{
		"A_INT":  "x",
		"A_DUR":  "5",
		"A_BOOL": "maybe",
		"A_ENUM": "loud",
		"A_OK":   " 42 ",
	})
	if got := r.Int("A_OK", 1, 0, 100); got != 42 {
		t.Fatalf("A_OK = %d, want 42", got)
	}
	r.Int("A_INT", 1, 0, 10)
	r.Duration("A_DUR", time.Second, 0, time.Hour)
	r.Bool("A_BOOL", false)
	r.Enum("A_ENUM", "open", "open", "closed")
	r.Required("A_MISSING")
	err := r.Err()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"A_INT", "A_DUR", "A_BOOL", "A_ENUM", "A_MISSING"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "A_OK") {
		t.Errorf("error %q names a valid variable", err)
	}
}

func TestReaderDefaultsAndRanges(t *testing.T) {
	r := FromMap(map[string]string{"N": "11", "L": "a, ,b,"})
	if got := r.Int("N", 3, 0, 10); got != 3 {
		t.Fatalf("out-of-range value should fall back to default, got %d", got)
	}
	if got := r.List("L", nil); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("List = %q", got)
	}
	if got := r.String("UNSET", "def"); got != "def" {
		t.Fatalf("String default = %q", got)
	}
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "N:") {
		t.Fatalf("want range error naming N, got %v", r.Err())
	}
}

func TestWithDefaultsPrefersEnvironment(t *testing.T) {
	t.Setenv("HGP_CONFIG_TEST_X", "from-env")
	r := WithDefaults(map[string]string{"HGP_CONFIG_TEST_X": "from-map", "HGP_CONFIG_TEST_Y": "y"})
	if got := r.String("HGP_CONFIG_TEST_X", ""); got != "from-env" {
		t.Fatalf("X = %q", got)
	}
	if got := r.String("HGP_CONFIG_TEST_Y", ""); got != "y" {
		t.Fatalf("Y = %q", got)
	}
}
