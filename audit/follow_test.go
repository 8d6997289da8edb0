package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

func openFollowLog(t *testing.T) (*sqlite.Store, *Log) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, err := Open(ctx, st, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return st, l
}

func TestPageCursorPassesNonMatchingEvents(t *testing.T) {
	ctx := context.Background()
	st, l := openFollowLog(t)

	events, cursor, err := Page(ctx, st, store.AuditQuery{Type: "session"})
	if err != nil || len(events) != 0 || cursor != 0 {
		t.Fatalf("Page on an empty log = %d events, cursor %d, %v; want none, 0", len(events), cursor, err)
	}
	l.Record(Event{Type: SessionStart, User: "alice"})
	l.Record(Event{Type: Query, User: "alice", Query: "SELECT 1"})
	l.Record(Event{Type: Query, User: "alice", Query: "SELECT 2"})
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	events, cursor, err = Page(ctx, st, store.AuditQuery{Type: "session"})
	if err != nil || len(events) != 1 || events[0].Seq != 1 {
		t.Fatalf("Page(session) = %+v, %v; want event 1", events, err)
	}
	// The two queries did not match, yet the cursor is past them.
	if cursor != 3 {
		t.Errorf("cursor = %d, want 3 (the newest event)", cursor)
	}
	events, cursor, err = Page(ctx, st, store.AuditQuery{Type: "session", AfterSeq: cursor})
	if err != nil || len(events) != 0 || cursor != 3 {
		t.Errorf("Page after the head = %d events, cursor %d, %v; want none, 3", len(events), cursor, err)
	}

	// A full page: the cursor is its last event, not the head.
	events, cursor, err = Page(ctx, st, store.AuditQuery{Limit: 2})
	if err != nil || len(events) != 2 || cursor != 2 {
		t.Errorf("Page(limit 2) = %d events, cursor %d, %v; want 2, 2", len(events), cursor, err)
	}
}

func TestWaitWakesOnMatchingEvent(t *testing.T) {
	ctx := context.Background()
	st, l := openFollowLog(t)
	l.Record(Event{Type: Query, User: "alice", Query: "SELECT 1"})
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		l.Record(Event{Type: Query, User: "bob", Query: "SELECT 2"})
		time.Sleep(100 * time.Millisecond)
		l.Record(Event{Type: SessionEnd, User: "bob"})
	}()
	start := time.Now()
	events, cursor, err := Wait(ctx, st, store.AuditQuery{Type: "session", AfterSeq: 1}, 20*time.Millisecond, nil)
	if err != nil || len(events) != 1 || events[0].Type != SessionEnd || cursor != 3 {
		t.Fatalf("Wait = %+v, cursor %d, %v; want the session.end, cursor 3", events, cursor, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Wait took %v", d)
	}
}

func TestWaitEndsWithoutErrorOnStopAndDeadline(t *testing.T) {
	st, l := openFollowLog(t)
	l.Record(Event{Type: Query, User: "alice", Query: "SELECT 1"})
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	events, cursor, err := Wait(ctx, st, store.AuditQuery{Type: "session"}, 20*time.Millisecond, nil)
	if err != nil || len(events) != 0 || cursor != 1 {
		t.Errorf("Wait past its deadline = %d events, cursor %d, %v; want none, 1, nil", len(events), cursor, err)
	}

	stop := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(stop) })
	start := time.Now()
	events, _, err = Wait(context.Background(), st, store.AuditQuery{Type: "session"}, 20*time.Millisecond, stop)
	if err != nil || len(events) != 0 {
		t.Errorf("Wait after stop = %d events, %v", len(events), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Wait took %v to notice stop", d)
	}
}
