package store

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// wait bounds every channel wait in these tests.
const wait = 5 * time.Second

func recv(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want a change")
		}
		return c
	case <-time.After(wait):
		t.Fatal("no change delivered")
	}
	return Change{}
}

func expectEmpty(t *testing.T, ch <-chan Change) {
	t.Helper()
	select {
	case c, ok := <-ch:
		if ok {
			t.Fatalf("unexpected change %+v", c)
		}
		t.Fatal("channel closed unexpectedly")
	default:
	}
}

func expectClosed(t *testing.T, ch <-chan Change) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after its context ended")
		}
	}
}

func userChange(i int) Change { return Change{Kind: UserChanged, User: fmt.Sprintf("u%d", i)} }

// publishBounded runs Publish and fails if it blocks.
func publishBounded(t *testing.T, f *Feed, changes ...Change) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f.Publish(changes...)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Publish blocked")
	}
}

func TestFeedDeliversToEveryWatcherInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var f Feed
	watchers := []<-chan Change{f.Watch(ctx), f.Watch(ctx), f.Watch(ctx)}
	var want []Change
	for i := range 50 {
		want = append(want, userChange(i))
	}
	want = append(want,
		Change{Kind: GroupChanged, Group: "analysts"},
		Change{Kind: MembershipChanged, User: "alice", Group: "analysts"},
		Change{Kind: SessionChanged, User: "alice"},
	)
	// One change at a time and several in one call.
	for _, c := range want[:40] {
		publishBounded(t, &f, c)
	}
	publishBounded(t, &f, want[40:]...)
	for wi, ch := range watchers {
		for i, w := range want {
			if got := recv(t, ch); got != w {
				t.Fatalf("watcher %d, change %d = %+v, want %+v", wi, i, got, w)
			}
		}
		expectEmpty(t, ch)
	}
}

func TestFeedWatchSeesOnlyLaterChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var f Feed
	f.Publish(userChange(0)) // no watchers: dropped, no panic
	ch := f.Watch(ctx)
	f.Publish(userChange(1))
	if got := recv(t, ch); got != userChange(1) {
		t.Fatalf("got %+v, want the change after Watch", got)
	}
	expectEmpty(t, ch)
}

func TestFeedOverflowSendsResync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var f Feed
	slow := f.Watch(ctx)
	fast := f.Watch(ctx)

	// Fill both buffers exactly; the fast watcher then drains.
	for i := range feedBuffer {
		publishBounded(t, &f, userChange(i))
	}
	for i := range feedBuffer {
		if got := recv(t, fast); got != userChange(i) {
			t.Fatalf("fast watcher change %d = %+v", i, got)
		}
	}
	if len(slow) != feedBuffer {
		t.Fatalf("slow watcher holds %d, want a full buffer of %d", len(slow), feedBuffer)
	}

	// One more overflows the slow watcher without blocking Publish.
	publishBounded(t, &f, userChange(feedBuffer))
	if got := recv(t, slow); got.Kind != Resync {
		t.Fatalf("slow watcher got %+v after overflow, want a Resync", got)
	}
	expectEmpty(t, slow)
	if got := recv(t, fast); got != userChange(feedBuffer) {
		t.Fatalf("fast watcher got %+v, want the change", got)
	}
	expectEmpty(t, fast)

	// After the Resync the slow watcher receives new changes normally.
	publishBounded(t, &f, userChange(1), userChange(2))
	for _, w := range []Change{userChange(1), userChange(2)} {
		if got := recv(t, slow); got != w {
			t.Fatalf("after resync got %+v, want %+v", got, w)
		}
	}
}

func TestFeedOverflowWithinOneBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var f Feed
	ch := f.Watch(ctx)
	batch := make([]Change, feedBuffer+10)
	for i := range batch {
		batch[i] = userChange(i)
	}
	publishBounded(t, &f, batch...)
	if got := recv(t, ch); got.Kind != Resync {
		t.Fatalf("got %+v, want a Resync", got)
	}
	expectEmpty(t, ch)
}

func TestFeedNeverBlocksOnAStalledWatcher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var f Feed
	stalled := f.Watch(ctx)
	// Far more than the buffer, in several calls: every Publish returns.
	for i := range 3 * feedBuffer {
		publishBounded(t, &f, userChange(i))
	}
	// Whatever is queued, the first thing the stalled watcher sees is a Resync
	// or the changes after one; never a silent gap.
	sawResync := false
	for len(stalled) > 0 {
		if c := <-stalled; c.Kind == Resync {
			sawResync = true
		} else if !sawResync {
			t.Fatalf("change %+v delivered before the Resync that reports the loss", c)
		}
	}
	if !sawResync {
		t.Fatal("a watcher that lost changes never got a Resync")
	}
}

func TestFeedClosesWhenContextEnds(t *testing.T) {
	var f Feed
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	a, b := f.Watch(ctx1), f.Watch(ctx2)
	f.Publish(userChange(1))
	cancel1()
	expectClosed(t, a) // drains the queued change, then sees the close

	// The other watcher is unaffected, and publishing after the close does
	// not panic.
	for i := range 100 {
		publishBounded(t, &f, userChange(i))
	}
	if got := recv(t, b); got != userChange(1) {
		t.Fatalf("remaining watcher got %+v", got)
	}
	for i := range 100 {
		if got := recv(t, b); got != userChange(i) {
			t.Fatalf("remaining watcher change %d = %+v", i, got)
		}
	}

	// Deadlines end a watch too.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel3()
	expectClosed(t, f.Watch(ctx3))

	// The closed watchers are forgotten: the watcher is removed before its
	// channel is closed, so having seen both closes, only b remains.
	f.mu.Lock()
	n := len(f.watchers)
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("feed holds %d watchers, want 1", n)
	}
}

// TestFeedConcurrentPublishAndCancel exercises Publish racing with watchers
// coming and going; run with -race. No send on a closed channel may happen.
func TestFeedConcurrentPublishAndCancel(t *testing.T) {
	var f Feed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				f.Publish(userChange(i))
				runtime.Gosched()
			}
		}
	}()
	for range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		ch := f.Watch(ctx)
		select {
		case <-ch:
		case <-time.After(wait):
			t.Fatal("no change delivered")
		}
		cancel()
		expectClosed(t, ch)
	}
}

func TestChangeKindString(t *testing.T) {
	for k, want := range map[ChangeKind]string{
		UserChanged: "user", GroupChanged: "group", MembershipChanged: "membership",
		SessionChanged: "session", Resync: "resync", ChangeKind(0): "ChangeKind(0)", ChangeKind(42): "ChangeKind(42)",
	} {
		if got := k.String(); got != want {
			t.Errorf("ChangeKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
