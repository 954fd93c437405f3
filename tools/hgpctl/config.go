package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/highgopress/highgopress/platform/config"
	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/platform/liveconfig"
)

// callTimeout bounds every Consul call of a command.
const callTimeout = 10 * time.Second

func configCommand(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, lookup env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: config needs a subcommand: keys, get, set, put, validate, diff, delete", errUsage)
	}
	sub, rest := args[0], args[1:]
	if sub == "keys" {
		return configKeys(rest, stdout)
	}
	if len(rest) == 0 {
		return fmt.Errorf("%w: config %s needs a service (%s)", errUsage, sub, serviceNames())
	}
	service := rest[0]
	schema, ok := schemas[service]
	if !ok {
		return fmt.Errorf("%w: no run-time settings for service %q (services: %s)", errUsage, service, serviceNames())
	}
	rest = rest[1:]
	switch sub {
	case "validate":
		doc, err := readDocument(rest, stdin, true)
		if err != nil {
			return err
		}
		if err := schema.Check(config.FromMap(nil), doc); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "valid: %d setting(s) for %s\n", len(doc), service)
		return nil
	}
	kv, err := consulKV(lookup)
	if err != nil {
		return err
	}
	switch sub {
	case "get":
		if len(rest) != 0 {
			return fmt.Errorf("%w: config get takes only a service", errUsage)
		}
		doc, pair, err := fetch(ctx, kv, service)
		if err != nil {
			return err
		}
		if pair == nil {
			fmt.Fprintf(stdout, "# %s: no document (environment settings only)\n{}\n", liveconfig.Key(service))
			return nil
		}
		fmt.Fprintf(stdout, "# %s version %d\n%s", liveconfig.Key(service), pair.ModifyIndex, doc.Encode())
		return nil
	case "diff":
		next, err := readDocument(rest, stdin, false)
		if err != nil {
			return err
		}
		cur, _, err := fetch(ctx, kv, service)
		if err != nil {
			return err
		}
		writeDiff(stdout, cur, next)
		return nil
	case "put":
		next, err := readDocument(rest, stdin, false)
		if err != nil {
			return err
		}
		_, pair, err := fetch(ctx, kv, service)
		if err != nil {
			return err
		}
		return store(ctx, kv, schema, service, pair, nil, next, stdout)
	case "set":
		changes, unset, replace, err := parseSet(rest)
		if err != nil {
			return err
		}
		cur, pair, err := fetch(ctx, kv, service)
		if err != nil {
			return err
		}
		next := liveconfig.Document{}
		if !replace {
			for k, v := range cur {
				next[k] = v
			}
		}
		for _, k := range unset {
			delete(next, k)
		}
		for k, v := range changes {
			next[k] = v
		}
		return store(ctx, kv, schema, service, pair, cur, next, stdout)
	case "delete":
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if _, err := kv.Delete(liveconfig.Key(service), (&api.WriteOptions{}).WithContext(cctx)); err != nil {
			return fmt.Errorf("consul: delete %s: %w", liveconfig.Key(service), err)
		}
		fmt.Fprintf(stdout, "deleted %s: %s runs on its environment settings\n", liveconfig.Key(service), service)
		return nil
	}
	return fmt.Errorf("%w: unknown config subcommand %q", errUsage, sub)
}

func serviceNames() string {
	n := make([]string, 0, len(schemas))
	for s := range schemas {
		n = append(n, s)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

func configKeys(args []string, stdout io.Writer) error {
	names := args
	if len(names) == 0 {
		names = strings.Split(serviceNames(), ", ")
	}
	for _, n := range names {
		s, ok := schemas[n]
		if !ok {
			return fmt.Errorf("%w: no run-time settings for service %q (services: %s)", errUsage, n, serviceNames())
		}
		fmt.Fprintf(stdout, "%s (%s):\n", n, liveconfig.Key(n))
		for _, k := range s.Keys() {
			fmt.Fprintf(stdout, "  %s\n", k)
		}
	}
	return nil
}

func consulKV(lookup env) (*api.KV, error) {
	addr, _ := lookup("HGP_CONSUL_ADDR")
	if strings.TrimSpace(addr) == "" {
		addr = "127.0.0.1:8500"
	}
	token, _ := lookup("HGP_CONSUL_TOKEN")
	c, err := discovery.NewClient(addr, token)
	if err != nil {
		return nil, err
	}
	return c.KV(), nil
}

// fetch returns the stored document (empty when there is none) and its
// pair (nil when there is none).
func fetch(ctx context.Context, kv *api.KV, service string) (liveconfig.Document, *api.KVPair, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	pair, _, err := kv.Get(liveconfig.Key(service), (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return nil, nil, fmt.Errorf("consul: read %s: %w", liveconfig.Key(service), err)
	}
	if pair == nil {
		return liveconfig.Document{}, nil, nil
	}
	doc, err := liveconfig.ParseDocument(pair.Value)
	if err != nil {
		// A broken stored document can still be replaced by set -replace or put.
		return liveconfig.Document{}, pair, nil
	}
	return doc, pair, nil
}

// store validates next and writes it with check-and-set against pair.
func store(ctx context.Context, kv *api.KV, schema liveconfig.Validator, service string, pair *api.KVPair, cur, next liveconfig.Document, stdout io.Writer) error {
	if err := schema.Check(config.FromMap(nil), next); err != nil {
		return fmt.Errorf("not written: %w", err)
	}
	var index uint64
	if pair != nil {
		index = pair.ModifyIndex
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ok, _, err := kv.CAS(&api.KVPair{Key: liveconfig.Key(service), Value: next.Encode(), ModifyIndex: index}, (&api.WriteOptions{}).WithContext(cctx))
	if err != nil {
		return fmt.Errorf("consul: write %s: %w", liveconfig.Key(service), err)
	}
	if !ok {
		return fmt.Errorf("not written: %s changed since it was read (someone else wrote it); run the command again", liveconfig.Key(service))
	}
	if cur != nil {
		writeDiff(stdout, cur, next)
	}
	fmt.Fprintf(stdout, "written %s: every %s replica applies it within seconds\n", liveconfig.Key(service), service)
	return nil
}

// parseSet reads KEY=VALUE changes, -unset KEY and -replace.
func parseSet(args []string) (changes map[string]string, unset []string, replace bool, err error) {
	changes = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-replace" || a == "--replace":
			replace = true
		case a == "-unset" || a == "--unset":
			if i+1 >= len(args) {
				return nil, nil, false, fmt.Errorf("%w: -unset needs a KEY", errUsage)
			}
			i++
			unset = append(unset, args[i])
		case strings.Contains(a, "="):
			k, v, _ := strings.Cut(a, "=")
			if k == "" {
				return nil, nil, false, fmt.Errorf("%w: %q: want KEY=VALUE", errUsage, a)
			}
			changes[k] = v
		default:
			return nil, nil, false, fmt.Errorf("%w: %q: want KEY=VALUE, -unset KEY or -replace", errUsage, a)
		}
	}
	if len(changes) == 0 && len(unset) == 0 {
		return nil, nil, false, fmt.Errorf("%w: config set needs at least one KEY=VALUE or -unset KEY", errUsage)
	}
	return changes, unset, replace, nil
}

// readDocument reads a document from the file named in args, or stdin for
// "-" (or no argument when optional).
func readDocument(args []string, stdin io.Reader, optional bool) (liveconfig.Document, error) {
	var raw []byte
	var err error
	switch {
	case len(args) > 1:
		return nil, fmt.Errorf("%w: one document at a time", errUsage)
	case len(args) == 0 && !optional:
		return nil, fmt.Errorf("%w: name a document file (or - for standard input)", errUsage)
	case len(args) == 0 || args[0] == "-":
		raw, err = io.ReadAll(io.LimitReader(stdin, liveconfig.MaxDocumentBytes+1))
	default:
		raw, err = os.ReadFile(args[0])
	}
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	return liveconfig.ParseDocument(raw)
}

// writeDiff prints one line per changed key: -old, +new.
func writeDiff(w io.Writer, cur, next liveconfig.Document) {
	keys := map[string]bool{}
	for k := range cur {
		keys[k] = true
	}
	for k := range next {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var b bytes.Buffer
	for _, k := range sorted {
		old, had := cur[k]
		nv, has := next[k]
		switch {
		case had && has && old == nv:
		case had && has:
			fmt.Fprintf(&b, "- %s=%s\n+ %s=%s\n", k, old, k, nv)
		case had:
			fmt.Fprintf(&b, "- %s=%s\n", k, old)
		default:
			fmt.Fprintf(&b, "+ %s=%s\n", k, nv)
		}
	}
	if b.Len() == 0 {
		fmt.Fprintln(w, "no change")
		return
	}
	_, _ = w.Write(b.Bytes())
}
