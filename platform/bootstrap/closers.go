package bootstrap

import (
	"errors"
	"sync"
)

// Closers is the one cleanup path of a start-up: every resource opened is
// added as it is opened, and Close releases them in reverse order. A build
// that fails half-way calls Close; one that succeeds hands Close to its
// Component, so the same list runs at shutdown. The zero value is ready to
// use; Close runs the list once and later calls return the same result.
type Closers struct {
	mu     sync.Mutex
	fns    []func() error
	once   sync.Once
	result error
}

// Add pushes f (nil is ignored); it runs before everything added earlier.
func (c *Closers) Add(f func() error) {
	if f == nil {
		return
	}
	c.mu.Lock()
	c.fns = append(c.fns, f)
	c.mu.Unlock()
}

// AddFunc pushes a release function that cannot fail.
func (c *Closers) AddFunc(f func()) {
	if f != nil {
		c.Add(func() error { f(); return nil })
	}
}

// Close runs every function in reverse order of Add, all of them even when
// some fail, and returns their errors joined.
func (c *Closers) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		fns := c.fns
		c.fns = nil
		c.mu.Unlock()
		var errs []error
		for i := len(fns) - 1; i >= 0; i-- {
			if err := fns[i](); err != nil {
				errs = append(errs, err)
			}
		}
		c.result = errors.Join(errs...)
	})
	return c.result
}
