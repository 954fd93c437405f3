package redisstore_test

import (
	"context"
	"testing"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/outbox"
)

// TestScriptsWriteTheOutboxContract: the Lua scripts write the outbox field
// names and kinds as literals; every entry they append uses only the names
// package outbox declares (which the relay reads), with every field the
// entry's kind needs.
func TestScriptsWriteTheOutboxContract(t *testing.T) {
	e := miniEnv(t)
	ctx := context.Background()
	it := domain.ItemRef{Namespace: "article", ID: "a1"}
	steps := []func() error{
		func() error { _, err := e.store.SetLike(ctx, "u1", it, true); return err },
		func() error { _, err := e.store.SetLike(ctx, "u1", it, false); return err },
		func() error { _, err := e.store.SetFollow(ctx, "u1", "u2", true); return err },
		func() error { _, err := e.store.SetFollow(ctx, "u1", "u2", false); return err },
		func() error {
			_, err := e.store.Increment(ctx, "u1", domain.Increment{Item: it, Metric: "views", Delta: 3, IdempotencyKey: "key-0001"})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	need := map[string][]string{
		outbox.KindLike:     {outbox.FieldUser, outbox.FieldNamespace, outbox.FieldItem, outbox.FieldDelta},
		outbox.KindUnlike:   {outbox.FieldUser, outbox.FieldNamespace, outbox.FieldItem, outbox.FieldDelta},
		outbox.KindFollow:   {outbox.FieldUser, outbox.FieldTarget, outbox.FieldDelta},
		outbox.KindUnfollow: {outbox.FieldUser, outbox.FieldTarget, outbox.FieldDelta},
		outbox.KindIncr:     {outbox.FieldUser, outbox.FieldNamespace, outbox.FieldItem, outbox.FieldMetric, outbox.FieldDelta, outbox.FieldIdemKey},
	}
	known := map[string]bool{}
	for _, f := range []string{outbox.FieldKind, outbox.FieldUser, outbox.FieldNamespace, outbox.FieldItem, outbox.FieldTarget,
		outbox.FieldDelta, outbox.FieldMetric, outbox.FieldIdemKey, outbox.FieldTraceparent} {
		known[f] = true
	}
	entries := outboxEntries(t, e.rdb)
	if len(entries) != len(steps) {
		t.Fatalf("%d outbox entries for %d changing writes: %v", len(entries), len(steps), entries)
	}
	kinds := map[string]bool{}
	for _, en := range entries {
		kind, _ := en[outbox.FieldKind].(string)
		fields, ok := need[kind]
		if !ok {
			t.Fatalf("entry %v has kind %q, not one package outbox declares", en, kind)
		}
		kinds[kind] = true
		for name := range en {
			if !known[name] {
				t.Errorf("entry %v has field %q, not one package outbox declares", en, name)
			}
		}
		for _, f := range fields {
			if v, _ := en[f].(string); v == "" {
				t.Errorf("%s entry %v lacks field %q", kind, en, f)
			}
		}
	}
	if len(kinds) != len(need) {
		t.Fatalf("kinds written %v; want all of %v", kinds, need)
	}
}
