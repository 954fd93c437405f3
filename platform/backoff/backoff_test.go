package backoff

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesCapsAndResets(t *testing.T) {
	b := New(time.Millisecond, 4*time.Millisecond)
	want := []time.Duration{2, 4, 4}
	for i, w := range want {
		if !b.Wait(context.Background()) {
			t.Fatal("Wait returned false without cancellation")
		}
		if b.cur != w*time.Millisecond {
			t.Fatalf("after wait %d: cur = %s, want %s", i, b.cur, w*time.Millisecond)
		}
	}
	b.Reset()
	if b.cur != time.Millisecond {
		t.Fatalf("after Reset: %s", b.cur)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if New(time.Hour, time.Hour).Wait(ctx) {
		t.Fatal("Wait on a cancelled context returned true")
	}
}
