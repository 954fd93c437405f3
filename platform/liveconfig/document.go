// Package liveconfig is the configuration centre: run-time settings shared
// by every replica of a service live in Consul KV, one JSON document per
// service under Prefix, and are applied without restart.
//
// Environment variables stay the bootstrap and the defaults. A document
// names only the variables it overrides, with the same names and the same
// value syntax as the environment:
//
//	highgopress/config/gateway = {"HGP_RATE_WRITE_USER": "5-S", "HGP_GATEWAY_READ_ONLY": "true"}
//
// A document is validated as a whole by the rules the service applies at
// start-up (its Schema's Parse over the environment overlaid with the
// document): a wrong type, an out-of-range value, or a key that is not one of
// the service's run-time settings (listen addresses and secrets never are)
// rejects the whole document; the last good settings stay, the rejection is
// logged and counted. An absent or empty document means "environment only".
package liveconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/highgopress/highgopress/platform/config"
)

// Prefix is the Consul KV prefix of every service's run-time document.
const Prefix = "highgopress/config/"

// MaxDocumentBytes bounds a document (Consul's own limit is 512 KiB).
const MaxDocumentBytes = 64 << 10

// Key is the KV key of service's document.
func Key(service string) string { return Prefix + service }

// Document is a parsed run-time document: variable name → value.
type Document map[string]string

// ParseDocument decodes raw (a JSON object whose values are strings). Empty
// input is the empty document.
func ParseDocument(raw []byte) (Document, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Document{}, nil
	}
	if len(raw) > MaxDocumentBytes {
		return nil, fmt.Errorf("liveconfig: document is %d bytes, more than %d", len(raw), MaxDocumentBytes)
	}
	var generic map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("liveconfig: document is not a JSON object of strings: %w", err)
	}
	if dec.More() {
		return nil, errors.New("liveconfig: document has data after its JSON object")
	}
	if generic == nil {
		return nil, errors.New("liveconfig: document is null, want a JSON object")
	}
	doc := make(Document, len(generic))
	var errs []error
	for _, k := range sortedKeys(generic) {
		var s string
		if err := json.Unmarshal(generic[k], &s); err != nil || string(bytes.TrimSpace(generic[k])) == "null" {
			errs = append(errs, fmt.Errorf("%s: wrong type: want a string such as \"5-S\" or \"true\", got %s", k, generic[k]))
			continue
		}
		doc[k] = s
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("liveconfig: %w", errors.Join(errs...))
	}
	return doc, nil
}

// Encode returns doc as indented JSON with sorted keys.
func (d Document) Encode() []byte {
	b, _ := json.MarshalIndent(map[string]string(d), "", "  ") // a map of strings always encodes
	return append(b, '\n')
}

// Validator is a Schema without its settings type: what a tool that only
// checks documents (hgpctl) needs.
type Validator interface {
	Service() string
	Keys() []string
	Check(base *config.Reader, doc Document) error
}

// Schema says which variables service accepts at run time and how they are
// validated and turned into settings T.
type Schema[T any] struct {
	Name string
	// Runtime lists the variables a document may set.
	Runtime []string
	// Parse reads T from r, recording problems on r (the service's start-up
	// rules for these variables).
	Parse func(r *config.Reader) T
}

// Service implements Validator.
func (s Schema[T]) Service() string { return s.Name }

// Keys implements Validator: the run-time variables, sorted.
func (s Schema[T]) Keys() []string {
	k := slices.Clone(s.Runtime)
	sort.Strings(k)
	return k
}

// Check implements Validator.
func (s Schema[T]) Check(base *config.Reader, doc Document) error {
	_, err := s.Validate(base, doc)
	return err
}

// Validate returns the settings base overlaid with doc gives, or every
// problem of doc at once.
func (s Schema[T]) Validate(base *config.Reader, doc Document) (T, error) {
	var zero T
	var errs []error
	for _, k := range sortedKeys(doc) {
		if !slices.Contains(s.Runtime, k) {
			errs = append(errs, fmt.Errorf("%s: not a run-time setting of %s (listen addresses and secrets never are; run-time settings: %s)",
				k, s.Name, strings.Join(s.Keys(), ", ")))
		}
	}
	if len(errs) > 0 {
		return zero, fmt.Errorf("liveconfig: %s: %w", s.Name, errors.Join(errs...))
	}
	r := base.Overlay(doc)
	v := s.Parse(r)
	if err := r.Err(); err != nil {
		return zero, fmt.Errorf("liveconfig: %s: %w", s.Name, err)
	}
	return v, nil
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}
