// Package audittest provides an audit sink for tests: it keeps the events
// the code under test records, to be read back and waited for.
package audittest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
)

// Recorder keeps every event recorded. Its Err is what SetErr last set,
// for tests of a failing audit store.
type Recorder struct {
	mu     sync.Mutex
	events []audit.Event
	err    error
	// held, while set, is closed when Release lets Flush return.
	held chan struct{}
}

// Flush returns at once, as events are kept as they are recorded, unless
// Hold made it wait for Release: as a slow audit store does.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	held := r.held
	r.mu.Unlock()
	if held == nil {
		return nil
	}
	select {
	case <-held:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Hold makes Flush wait until Release.
func (r *Recorder) Hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = make(chan struct{})
	}
}

// Release lets the Flush calls waiting since Hold return, and those after.
func (r *Recorder) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held != nil {
		close(r.held)
		r.held = nil
	}
}

// Record keeps e.
func (r *Recorder) Record(e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Err is the error SetErr set, nil by default.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// SetErr makes Err return err, as a store that refuses writes does.
func (r *Recorder) SetErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// All returns the events kept so far.
func (r *Recorder) All() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// OfType returns the events of type typ kept so far.
func (r *Recorder) OfType(typ string) []audit.Event {
	var out []audit.Event
	for _, e := range r.All() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// WaitFor waits up to five seconds for an event of type typ that ok
// accepts, and fails the test without one.
func (r *Recorder) WaitFor(t testing.TB, typ string, ok func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range r.OfType(typ) {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event as expected; have %+v", typ, r.OfType(typ))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
