package bootstrap_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/highgopress/highgopress/platform/bootstrap"
)

func TestClosersRunInReverseOnce(t *testing.T) {
	var (
		c     bootstrap.Closers
		order []string
	)
	errA, errC := errors.New("a failed"), errors.New("c failed")
	c.Add(func() error { order = append(order, "a"); return errA })
	c.AddFunc(func() { order = append(order, "b") })
	c.Add(nil)
	c.Add(func() error { order = append(order, "c"); return errC })
	err := c.Close()
	if !slices.Equal(order, []string{"c", "b", "a"}) {
		t.Fatalf("order %v, want c b a", order)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Fatalf("Close = %v, want both errors", err)
	}
	if again := c.Close(); again == nil || len(order) != 3 {
		t.Fatalf("second Close ran again (order %v) or lost the result (%v)", order, again)
	}
}
