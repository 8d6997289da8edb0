package store

import (
	"context"
	"sync"
)

// Feed fans committed changes out to watchers. Backends publish after their
// transaction commits. A watcher that falls behind is not allowed to block the
// writer: it loses the queued changes and receives one Resync instead, after
// which it must re-check everything it cares about.
type Feed struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch chan Change
}

// feedBuffer is how many changes a watcher may have queued.
const feedBuffer = 4096

// Watch subscribes until ctx ends; the channel is closed then.
func (f *Feed) Watch(ctx context.Context) <-chan Change {
	w := &watcher{ch: make(chan Change, feedBuffer)}
	f.mu.Lock()
	if f.watchers == nil {
		f.watchers = map[*watcher]struct{}{}
	}
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.watchers, w)
		close(w.ch)
		f.mu.Unlock()
	}()
	return w.ch
}

// Publish delivers changes to every watcher without blocking.
func (f *Feed) Publish(changes ...Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		if !w.offer(changes) {
			// Make room for a Resync by dropping what is queued: the
			// watcher re-checks everything anyway. Only Publish sends, under
			// f.mu, so after the drain the send cannot block.
			for drained := false; !drained; {
				select {
				case <-w.ch:
				default:
					drained = true
				}
			}
			w.ch <- Change{Kind: Resync}
		}
	}
}

// offer queues changes, reporting false if the buffer overflowed.
func (w *watcher) offer(changes []Change) bool {
	for _, c := range changes {
		select {
		case w.ch <- c:
		default:
			return false
		}
	}
	return true
}
