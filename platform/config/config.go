// Package config reads service configuration from environment variables.
//
// A Reader collects every problem instead of stopping at the first, so a
// service that starts with a bad environment reports all of it at once, each
// error naming the variable.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Reader reads typed values from the environment and remembers errors.
type Reader struct {
	lookup func(string) (string, bool)
	errs   []error
}

// FromEnv returns a Reader over the process environment.
func FromEnv() *Reader { return &Reader{lookup: os.LookupEnv} }

// FromMap returns a Reader over a fixed map, for tests and the standalone mode.
func FromMap(m map[string]string) *Reader {
	return &Reader{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// WithOverrides returns a Reader that consults m before the environment.
func WithOverrides(m map[string]string) *Reader {
	return &Reader{lookup: func(k string) (string, bool) {
		if v, ok := m[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}}
}

// WithDefaults returns a Reader that consults the environment first and m
// for variables the environment does not set: how the standalone mode gives
// its embedded servers' addresses while still letting users override them.
func WithDefaults(m map[string]string) *Reader {
	return &Reader{lookup: func(k string) (string, bool) {
		if v, ok := os.LookupEnv(k); ok && strings.TrimSpace(v) != "" {
			return v, true
		}
		v, ok := m[k]
		return v, ok
	}}
}

// Overlay returns a Reader that consults m before r, with no errors
// recorded yet: how run-time overrides (platform/liveconfig) are validated by
// the same rules as start-up.
func (r *Reader) Overlay(m map[string]string) *Reader {
	base := r.lookup
	return &Reader{lookup: func(k string) (string, bool) {
		if v, ok := m[k]; ok {
			return v, true
		}
		return base(k)
	}}
}

func (r *Reader) get(name string) (string, bool) {
	v, ok := r.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return strings.TrimSpace(v), true
}

func (r *Reader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// String returns the variable's value or def.
func (r *Reader) String(name, def string) string {
	if v, ok := r.get(name); ok {
		return v
	}
	return def
}

// Required returns the variable's value and records an error when it is unset.
func (r *Reader) Required(name string) string {
	v, ok := r.get(name)
	if !ok {
		r.fail(name, "required but not set")
	}
	return v
}

// List returns a comma-separated list, without empty elements.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Int returns an integer within [min, max].
func (r *Reader) Int(name string, def, min, max int) int {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, "%q is not an integer", v)
		return def
	}
	if n < min || n > max {
		r.fail(name, "%d is outside [%d, %d]", n, min, max)
		return def
	}
	return n
}

// Bool returns a boolean (true/false/1/0/yes/no).
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	r.fail(name, "%q is not a boolean", v)
	return def
}

// Duration returns a Go duration (e.g. 250ms, 5s) within [min, max].
func (r *Reader) Duration(name string, def, min, max time.Duration) time.Duration {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration (examples: 250ms, 5s)", v)
		return def
	}
	if d < min || d > max {
		r.fail(name, "%s is outside [%s, %s]", d, min, max)
		return def
	}
	return d
}

// Enum returns one of the allowed values.
func (r *Reader) Enum(name, def string, allowed ...string) string {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

// Check records err against name when err is not nil.
func (r *Reader) Check(name string, err error) {
	if err != nil {
		r.fail(name, "%v", err)
	}
}

// Err returns every recorded problem, joined, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(r.errs...))
}
