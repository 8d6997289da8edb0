package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/token"
)

// memStore is an in-memory Appender and Lister. Tests edit events directly
// to play an attacker with write access to the store.
type memStore struct {
	mu     sync.Mutex
	events []store.AuditEvent
	// failures is how many AppendAudit calls fail before one succeeds.
	failures int
	appends  int
	// block, when set, makes AppendAudit wait for it to close.
	block   chan struct{}
	lastErr error
}

var (
	_ Appender = (*memStore)(nil)
	_ Lister   = (*memStore)(nil)
)

func cloneEvent(e store.AuditEvent) store.AuditEvent {
	e.Detail = bytes.Clone(e.Detail)
	e.PrevHash = bytes.Clone(e.PrevHash)
	e.Hash = bytes.Clone(e.Hash)
	return e
}

func (m *memStore) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appends++
	if m.failures > 0 {
		m.failures--
		return errors.New("disk full")
	}
	for _, e := range events {
		e = cloneEvent(e)
		e.Seq = int64(len(m.events) + 1)
		m.events = append(m.events, e)
	}
	return nil
}

func (m *memStore) ChainHead(ctx context.Context, chain string) (store.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastErr != nil {
		return store.AuditEvent{}, m.lastErr
	}
	for _, e := range slices.Backward(m.events) {
		if e.Chain == chain {
			return cloneEvent(e), nil
		}
	}
	return store.AuditEvent{}, fmt.Errorf("empty: %w", store.ErrNotFound)
}

func (m *memStore) LastAudit(ctx context.Context) (store.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastErr != nil {
		return store.AuditEvent{}, m.lastErr
	}
	if len(m.events) == 0 {
		return store.AuditEvent{}, fmt.Errorf("empty: %w", store.ErrNotFound)
	}
	return cloneEvent(m.events[len(m.events)-1]), nil
}

// ListAudit returns events in stored order (not sorted), so a test can
// reorder them.
func (m *memStore) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.AuditEvent
	for _, e := range m.events {
		if e.Seq <= q.AfterSeq {
			continue
		}
		out = append(out, cloneEvent(e))
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	return out, nil
}

func (m *memStore) snapshot() []store.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.AuditEvent, len(m.events))
	for i, e := range m.events {
		out[i] = cloneEvent(e)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var epoch = time.Date(2031, 1, 2, 3, 4, 5, 600, time.UTC)

func openLog(t *testing.T, app Appender) *Log {
	t.Helper()
	l, err := Open(context.Background(), app, quietLogger(), func() time.Time { return epoch })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func flush(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// fullEvent has every field set.
func fullEvent(i int) Event {
	return Event{
		Time:      epoch.Add(time.Duration(i) * time.Second),
		Type:      Query,
		Actor:     "admin",
		User:      "alice",
		Database:  "orders",
		Access:    "ro",
		Client:    "10.0.0.7:51234",
		SessionID: fmt.Sprintf("sess-%d", i),
		Query:     fmt.Sprintf("SELECT %d", i),
		Reason:    "alice is in analysts → db-readonly (ro) on orders",
		Detail:    map[string]any{"rows": i, "ok": true},
	}
}

func TestRecordFlushStoresInOrder(t *testing.T) {
	m := &memStore{}
	l := openLog(t, m)
	local := time.FixedZone("UTC+5", 5*3600)
	l.Record(Event{Type: SessionStart, User: "alice", Database: "orders", Access: "ro", Client: "10.0.0.7:5000", SessionID: "s1"})
	l.Record(Event{Type: Query, User: "alice", Query: "SELECT 1", Time: epoch.Add(time.Second).In(local)})
	l.Record(Event{Type: TokenIssued, User: "alice", Detail: map[string]any{"token_id": "abc", "expires": "2031-01-02T03:19:05Z"}})
	for i := range 20 {
		l.Record(fullEvent(i))
	}
	l.Record(Event{Type: SessionEnd, User: "alice", Reason: "client closed"})
	flush(t, l)

	got := m.snapshot()
	if len(got) != 24 {
		t.Fatalf("stored %d events, want 24", len(got))
	}
	genesisHash := sha256.Sum256([]byte("keygate audit log"))
	prev := genesisHash[:]
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("event %d PrevHash does not link to the one before", e.Seq)
		}
		if !bytes.Equal(e.Hash, Hash(e)) {
			t.Fatalf("event %d Hash is not Hash(event)", e.Seq)
		}
		if e.Time.Location() != time.UTC {
			t.Errorf("event %d time %v not in UTC", e.Seq, e.Time)
		}
		prev = e.Hash
	}
	if !got[0].Time.Equal(epoch) {
		t.Errorf("zero Time = %v, want the clock's %v", got[0].Time, epoch)
	}
	if !got[1].Time.Equal(epoch.Add(time.Second)) {
		t.Errorf("given Time = %v, want %v", got[1].Time, epoch.Add(time.Second))
	}
	if got[0].Type != SessionStart || got[0].User != "alice" || got[0].Database != "orders" || got[0].Access != "ro" || got[0].Client != "10.0.0.7:5000" || got[0].SessionID != "s1" {
		t.Errorf("first event = %+v", got[0])
	}
	if got[0].Detail != nil {
		t.Errorf("event without detail stored Detail %q", got[0].Detail)
	}
	var d map[string]any
	if err := json.Unmarshal(got[2].Detail, &d); err != nil || d["token_id"] != "abc" {
		t.Errorf("Detail = %s (%v)", got[2].Detail, err)
	}
	for i := range 20 {
		e := got[3+i]
		if e.SessionID != fmt.Sprintf("sess-%d", i) || e.Query != fmt.Sprintf("SELECT %d", i) {
			t.Fatalf("events out of order: position %d holds %s / %q", 3+i, e.SessionID, e.Query)
		}
	}
	if got[23].Type != SessionEnd || got[23].Reason != "client closed" {
		t.Errorf("last event = %+v", got[23])
	}

	n, err := Verify(context.Background(), m)
	if err != nil || n != 24 {
		t.Fatalf("Verify = %d, %v; want 24, nil", n, err)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	n, err := Verify(context.Background(), &memStore{})
	if err != nil || n != 0 {
		t.Errorf("Verify(empty) = %d, %v", n, err)
	}
}

// chain records n full events and returns the store.
func chain(t *testing.T, n int) *memStore {
	t.Helper()
	m := &memStore{}
	l := openLog(t, m)
	for i := range n {
		l.Record(fullEvent(i))
	}
	flush(t, l)
	if got, err := Verify(context.Background(), m); err != nil || got != int64(n) {
		t.Fatalf("untouched chain: Verify = %d, %v", got, err)
	}
	return m
}

func verifyFails(t *testing.T, m *memStore, wantText ...string) {
	t.Helper()
	_, err := Verify(context.Background(), m)
	if err == nil {
		t.Fatal("Verify succeeded on a tampered log")
	}
	for _, w := range wantText {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Verify error %q does not contain %q", err, w)
		}
	}
}

func TestVerifyFindsEditedField(t *testing.T) {
	edits := map[string]func(e *store.AuditEvent){
		"time":       func(e *store.AuditEvent) { e.Time = e.Time.Add(time.Nanosecond) },
		"type":       func(e *store.AuditEvent) { e.Type = SessionEnd },
		"actor":      func(e *store.AuditEvent) { e.Actor = "root" },
		"user":       func(e *store.AuditEvent) { e.User = "mallory" },
		"database":   func(e *store.AuditEvent) { e.Database = "billing" },
		"access":     func(e *store.AuditEvent) { e.Access = "rw" },
		"client":     func(e *store.AuditEvent) { e.Client = "10.0.0.8:1" },
		"session id": func(e *store.AuditEvent) { e.SessionID = "other" },
		"query":      func(e *store.AuditEvent) { e.Query = "SELECT 99" },
		"query case": func(e *store.AuditEvent) { e.Query = strings.ToLower(e.Query) },
		"reason":     func(e *store.AuditEvent) { e.Reason = "" },
		"detail":     func(e *store.AuditEvent) { e.Detail = []byte(`{"ok":true,"rows":3}`) },
		"no detail":  func(e *store.AuditEvent) { e.Detail = nil },
		"prev hash":  func(e *store.AuditEvent) { e.PrevHash[0] ^= 1 },
		"hash":       func(e *store.AuditEvent) { e.Hash[31] ^= 1 },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			m := chain(t, 5)
			edit(&m.events[2])
			verifyFails(t, m, "event 3")
		})
	}
	t.Run("seq", func(t *testing.T) {
		m := chain(t, 5)
		m.events[2].Seq = 7
		verifyFails(t, m, "after event 2", "next stored event is 7")
	})
	t.Run("edited and re-hashed", func(t *testing.T) {
		// An attacker who recomputes the edited event's hash is caught by
		// the next event's link.
		m := chain(t, 5)
		m.events[2].Query = "SELECT harmless"
		m.events[2].Hash = Hash(m.events[2])
		verifyFails(t, m, "event 4", "does not link to event 3")
	})
	t.Run("first event", func(t *testing.T) {
		m := chain(t, 3)
		m.events[0].User = "mallory"
		verifyFails(t, m, "event 1")
	})
	t.Run("last event", func(t *testing.T) {
		m := chain(t, 3)
		m.events[2].User = "mallory"
		verifyFails(t, m, "event 3")
	})
}

func TestVerifyFindsDeletedEvent(t *testing.T) {
	for _, tt := range []struct {
		del  int
		want []string
	}{
		{0, []string{"after event 0", "next stored event is 2"}},
		{2, []string{"after event 2", "next stored event is 4"}},
		{3, []string{"after event 3", "next stored event is 5"}},
	} {
		m := chain(t, 5)
		m.events = slices.Delete(m.events, tt.del, tt.del+1)
		verifyFails(t, m, tt.want...)
	}
	// Removing the newest events cannot be seen from the chain alone, but
	// the count Verify returns shows it.
	m := chain(t, 5)
	m.events = m.events[:4]
	if n, err := Verify(context.Background(), m); err != nil || n != 4 {
		t.Errorf("truncated log: Verify = %d, %v; want 4 checked", n, err)
	}
}

func TestVerifyFindsReorderedEvents(t *testing.T) {
	t.Run("swapped as stored", func(t *testing.T) {
		m := chain(t, 5)
		m.events[1], m.events[2] = m.events[2], m.events[1]
		verifyFails(t, m, "after event 1", "next stored event is 3")
	})
	t.Run("swapped and renumbered", func(t *testing.T) {
		m := chain(t, 5)
		m.events[1], m.events[2] = m.events[2], m.events[1]
		m.events[1].Seq, m.events[2].Seq = 2, 3
		m.events[1].ChainSeq, m.events[2].ChainSeq = 2, 3
		verifyFails(t, m, "event 2")
	})
	t.Run("inserted", func(t *testing.T) {
		m := chain(t, 5)
		forged := m.events[1]
		forged.Seq, forged.ChainSeq = 3, 3
		forged.PrevHash = m.events[1].Hash
		forged.Query = "SELECT forged"
		forged.Hash = Hash(forged)
		rest := slices.Clone(m.events[2:])
		for i := range rest {
			rest[i].Seq++
			rest[i].ChainSeq++
		}
		m.events = append(append(m.events[:2:2], forged), rest...)
		verifyFails(t, m, "event 4", "does not link to event 3")
	})
}

func TestVerifyPagesThroughLongLog(t *testing.T) {
	// Verify reads 5000 events at a time; a break in the second page is found.
	m := chain(t, 5003)
	m.events[5001].Reason = "edited"
	verifyFails(t, m, "event 5002")
}

func TestOpenContinuesChain(t *testing.T) {
	m := &memStore{}
	l := openLog(t, m)
	for i := range 3 {
		l.Record(fullEvent(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before := m.snapshot()

	l2 := openLog(t, m)
	l2.Record(fullEvent(3))
	l2.Record(fullEvent(4))
	flush(t, l2)
	got := m.snapshot()
	if len(got) != 5 {
		t.Fatalf("stored %d events, want 5", len(got))
	}
	if got[3].Seq != 4 || got[4].Seq != 5 {
		t.Errorf("seqs after reopen = %d, %d; want 4, 5", got[3].Seq, got[4].Seq)
	}
	if !bytes.Equal(got[3].PrevHash, before[2].Hash) {
		t.Error("first event after reopen does not link to the last stored one")
	}
	if n, err := Verify(context.Background(), m); err != nil || n != 5 {
		t.Errorf("Verify = %d, %v", n, err)
	}
}

func TestOpenFailsWhenStoreFails(t *testing.T) {
	m := &memStore{lastErr: errors.New("connection refused")}
	l, err := Open(context.Background(), m, quietLogger(), nil)
	if err == nil {
		l.Close()
		t.Fatal("Open succeeded although the last event could not be read")
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q hides the cause", err)
	}
}

func TestTokensAreRedacted(t *testing.T) {
	tok, _, err := (&token.Issuer{Keys: token.NewMemoryKeys(), Now: time.Now}).Mint(token.Claims{
		User: "alice", Database: "orders", Access: access.ReadOnly, Expires: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	shaped := "v4.public.eyJhIjoiYiJ9-_AZaz09.eyJraWQiOiJ4In0"
	m := &memStore{}
	l := openLog(t, m)
	l.Record(Event{
		Type:     ConnectRefused,
		Actor:    tok,
		User:     tok,
		Database: "orders " + shaped,
		Query:    "SELECT 1; -- password was " + tok + " oops",
		Reason:   "bad password " + shaped + ", retry",
		Detail:   map[string]any{"password": tok, "nested": map[string]any{"list": []string{"x", "pre" + tok}}},
	})
	l.Record(Event{Type: Query, Query: "SELECT 'v4.publicity', 'v4.public.'"})
	flush(t, l)
	got := m.snapshot()
	e := got[0]
	payload := strings.Split(tok, ".")[2]
	for field, v := range map[string]string{
		"Actor": e.Actor, "User": e.User, "Database": e.Database, "Query": e.Query, "Reason": e.Reason, "Detail": string(e.Detail),
	} {
		if strings.Contains(v, "v4.public.") || strings.Contains(v, payload) || strings.Contains(v, "eyJhIjoiYiJ9") {
			t.Errorf("%s still holds a token: %q", field, v)
		}
		if !strings.Contains(v, "[redacted token]") {
			t.Errorf("%s = %q, want a redaction marker", field, v)
		}
	}
	if e.Query != "SELECT 1; -- password was [redacted token] oops" {
		t.Errorf("Query = %q: the text around the token must stay", e.Query)
	}
	if e.Reason != "bad password [redacted token], retry" {
		t.Errorf("Reason = %q", e.Reason)
	}
	if !json.Valid(e.Detail) {
		t.Errorf("redacted Detail is not JSON: %s", e.Detail)
	}
	if got[1].Query != "SELECT 'v4.publicity', 'v4.public.'" {
		t.Errorf("text that is not a token was changed: %q", got[1].Query)
	}
	if n, err := Verify(context.Background(), m); err != nil || n != 2 {
		t.Errorf("Verify after redaction = %d, %v", n, err)
	}
}

func TestLongQueryIsTruncated(t *testing.T) {
	tests := map[string]string{
		"ascii":                   strings.Repeat("x", MaxQueryLen+1000),
		"two-byte runes, cut mid": "a" + strings.Repeat("é", MaxQueryLen),
		"four-byte runes":         "ab" + strings.Repeat("🔑", MaxQueryLen/2),
		"one byte over":           strings.Repeat("y", MaxQueryLen+1),
	}
	m := &memStore{}
	l := openLog(t, m)
	var names []string
	for name, q := range tests {
		names = append(names, name)
		l.Record(Event{Type: Query, Query: q})
	}
	exact := strings.Repeat("z", MaxQueryLen)
	l.Record(Event{Type: Query, Query: exact})
	flush(t, l)
	got := m.snapshot()
	for i, name := range names {
		q, stored := tests[name], got[i].Query
		if !utf8.ValidString(stored) {
			t.Errorf("%s: truncated query is not valid UTF-8", name)
		}
		// The kept part is the longest prefix that ends on a rune boundary.
		cut := MaxQueryLen
		for !utf8.RuneStart(q[cut]) {
			cut--
		}
		want := q[:cut] + fmt.Sprintf("…[%d more bytes]", len(q)-cut)
		if stored != want {
			t.Errorf("%s: stored %d bytes ending %q; want %d bytes ending %q", name, len(stored), stored[max(0, len(stored)-30):], len(want), want[len(want)-30:])
		}
		if len(stored) > MaxQueryLen+32 {
			t.Errorf("%s: stored query is %d bytes", name, len(stored))
		}
	}
	if got[len(names)].Query != exact {
		t.Error("a query of exactly MaxQueryLen bytes was changed")
	}
	if _, err := Verify(context.Background(), m); err != nil {
		t.Error(err)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 5, "hello"},
		{"hello", 10, "hello"},
		{"hello", 3, "hel…[2 more bytes]"},
		{"héllo", 2, "h…[5 more bytes]"}, // é is 2 bytes; cutting at 2 would split it
		{"héllo", 3, "hé…[3 more bytes]"},
		{"🔑🔑", 5, "🔑…[4 more bytes]"},
		{"🔑🔑", 3, "…[8 more bytes]"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		got := truncate(tt.s, tt.n)
		if got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) is not valid UTF-8", tt.s, tt.n)
		}
	}
}

func TestCloseStoresEverythingQueued(t *testing.T) {
	m := &memStore{}
	l, err := Open(context.Background(), m, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		l.Record(Event{Type: Query, Query: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := m.snapshot()
	if len(got) != n {
		t.Fatalf("stored %d events after Close, want %d", len(got), n)
	}
	for i, e := range got {
		if e.Seq != int64(i+1) || e.Query != fmt.Sprint(i) {
			t.Fatalf("position %d: seq %d query %q", i, e.Seq, e.Query)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n, err := Verify(context.Background(), m); err != nil || n != 5000 {
		t.Errorf("Verify = %d, %v", n, err)
	}
}

func TestConcurrentRecord(t *testing.T) {
	m := &memStore{}
	l := openLog(t, m)
	const writers, each = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				l.Record(Event{Type: Query, User: fmt.Sprintf("w%d", w), Query: fmt.Sprint(i)})
			}
		}()
	}
	wg.Wait()
	flush(t, l)
	got := m.snapshot()
	if len(got) != writers*each {
		t.Fatalf("stored %d, want %d", len(got), writers*each)
	}
	next := map[string]int{}
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("position %d has seq %d", i, e.Seq)
		}
		if e.Query != fmt.Sprint(next[e.User]) {
			t.Fatalf("writer %s: event %q out of order, want %d", e.User, e.Query, next[e.User])
		}
		next[e.User]++
	}
	if _, err := Verify(context.Background(), m); err != nil {
		t.Error(err)
	}
}

func TestFailedWriteIsRetried(t *testing.T) {
	m := &memStore{failures: 1}
	l := openLog(t, m)
	for i := range 3 {
		l.Record(fullEvent(i))
	}
	flush(t, l)
	got := m.snapshot()
	if len(got) != 3 {
		t.Fatalf("stored %d events after a failed write, want 3 (none lost, none doubled)", len(got))
	}
	if m.appends < 2 {
		t.Errorf("AppendAudit called %d times, want a retry", m.appends)
	}
	if _, err := Verify(context.Background(), m); err != nil {
		t.Error(err)
	}
}

func TestFlushHonoursContext(t *testing.T) {
	m := &memStore{block: make(chan struct{})}
	l, err := Open(context.Background(), m, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Type: Query, Query: "stuck"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush while the store hangs = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Flush took %v", d)
	}
	close(m.block)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.snapshot(); len(got) != 1 || got[0].Query != "stuck" {
		t.Errorf("after the store recovered: %+v", got)
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := store.AuditEvent{
		Seq: 7, Time: epoch, Type: "query", Actor: "a", User: "u", Database: "d", Access: "ro", Client: "c",
		SessionID: "s", Query: "q", Reason: "r", Detail: []byte(`{}`), PrevHash: []byte{1, 2, 3},
	}
	h := Hash(base)
	if len(h) != sha256.Size {
		t.Fatalf("Hash is %d bytes", len(h))
	}
	if !bytes.Equal(Hash(base), h) {
		t.Fatal("Hash is not deterministic")
	}
	withHash := base
	withHash.Hash = []byte("ignored")
	if !bytes.Equal(Hash(withHash), h) {
		t.Error("Hash depends on the Hash field")
	}
	variants := map[string]func(e *store.AuditEvent){
		"seq":        func(e *store.AuditEvent) { e.ChainSeq++ },
		"chain":      func(e *store.AuditEvent) { e.Chain = "b" },
		"time":       func(e *store.AuditEvent) { e.Time = e.Time.Add(1) },
		"type":       func(e *store.AuditEvent) { e.Type = "x" },
		"actor":      func(e *store.AuditEvent) { e.Actor = "x" },
		"user":       func(e *store.AuditEvent) { e.User = "x" },
		"database":   func(e *store.AuditEvent) { e.Database = "x" },
		"access":     func(e *store.AuditEvent) { e.Access = "x" },
		"client":     func(e *store.AuditEvent) { e.Client = "x" },
		"session":    func(e *store.AuditEvent) { e.SessionID = "x" },
		"query":      func(e *store.AuditEvent) { e.Query = "x" },
		"reason":     func(e *store.AuditEvent) { e.Reason = "x" },
		"detail":     func(e *store.AuditEvent) { e.Detail = []byte(`{"a":1}`) },
		"prev":       func(e *store.AuditEvent) { e.PrevHash = []byte{1, 2, 4} },
		"boundary 1": func(e *store.AuditEvent) { e.Type, e.Actor = "querya", "" },
		"boundary 2": func(e *store.AuditEvent) { e.Query, e.Reason = "qr", "" },
		"boundary 3": func(e *store.AuditEvent) { e.User, e.Database = "", "ud" },
	}
	seen := map[string]string{string(h): "base"}
	for name, change := range variants {
		e := base
		change(&e)
		hv := string(Hash(e))
		if other, dup := seen[hv]; dup {
			t.Errorf("changing %s gives the same hash as %s", name, other)
		}
		seen[hv] = name
	}
}

// TestSQLiteStore runs the log against the real embedded store: what is
// written reads back, the chain verifies, and a reopened log continues it.
func TestSQLiteStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	l, err := Open(ctx, st, quietLogger(), func() time.Time { return epoch })
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := (&token.Issuer{Keys: token.NewMemoryKeys(), Now: time.Now}).Mint(token.Claims{
		User: "alice", Database: "orders", Access: access.ReadOnly, Expires: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every event carries a Detail: see TestSQLiteStoreEventWithoutDetail.
	l.Record(Event{Type: SessionStart, User: "alice", Database: "orders", Access: "ro", Client: "127.0.0.1:5000", SessionID: "s1", Detail: map[string]any{"tls": "1.3"}})
	l.Record(Event{Type: Query, User: "alice", Database: "orders", SessionID: "s1", Query: "SELECT 1 -- " + tok, Detail: map[string]any{"n": 1}})
	l.Record(Event{Type: TokenIssued, User: "alice", Database: "orders", Detail: map[string]any{"token_id": "t1"}})
	l.Record(Event{Type: SessionEnd, User: "alice", Database: "orders", SessionID: "s1", Detail: map[string]any{"bytes": 42}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	events, err := st.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 {
		t.Fatalf("stored %d events, want 4", len(events))
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
	}
	if events[1].Query != "SELECT 1 -- [redacted token]" || !events[1].Time.Equal(epoch) {
		t.Errorf("query event = %+v", events[1])
	}
	sessions, err := st.ListAudit(ctx, store.AuditQuery{Type: "session"})
	if err != nil || len(sessions) != 2 {
		t.Errorf("type filter session: %d events, %v", len(sessions), err)
	}
	if n, err := Verify(ctx, st); err != nil || n != 4 {
		t.Fatalf("Verify on the SQLite store = %d, %v; want 4, nil", n, err)
	}

	// Reopen the store and the log: the chain continues.
	st.Close()
	st2, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	l2, err := Open(ctx, st2, quietLogger(), func() time.Time { return epoch.Add(time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	l2.Record(Event{Type: Query, User: "bob", Query: "SELECT 2", Detail: map[string]any{"rows": 1}})
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	last, err := st2.LastAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.Seq != 5 || !bytes.Equal(last.PrevHash, events[3].Hash) {
		t.Errorf("event after reopen: seq %d, links to the last one: %v", last.Seq, bytes.Equal(last.PrevHash, events[3].Hash))
	}
	if n, err := Verify(ctx, st2); err != nil || n != 5 {
		t.Errorf("Verify after reopen = %d, %v", n, err)
	}
}

// TestSQLiteStoreEventWithoutDetail: most events (session.start, query) have
// no Detail. The chain must verify after they round-trip through the store.
func TestSQLiteStoreEventWithoutDetail(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := Open(ctx, st, quietLogger(), func() time.Time { return epoch })
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Type: SessionStart, User: "alice", Database: "orders", SessionID: "s1"})
	l.Record(Event{Type: Query, User: "alice", Database: "orders", SessionID: "s1", Query: "SELECT 1"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, st); err != nil || n != 2 {
		t.Fatalf("Verify = %d, %v; want 2, nil", n, err)
	}
}

// An HTTP handler that outlives the shutdown grace may still record after
// the log closed: that must not crash the server.
func TestRecordAndFlushAfterClose(t *testing.T) {
	m := &memStore{}
	l := openLog(t, m)
	l.Record(Event{Type: Query, Query: "before"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Type: Query, Query: "after"})
	if err := l.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
	if got := m.snapshot(); len(got) != 1 || got[0].Query != "before" {
		t.Fatalf("stored %+v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// While writes fail, Err says so; once one succeeds, it clears.
func TestErrWhileWritesFail(t *testing.T) {
	block := make(chan struct{})
	m := &memStore{failures: 2, block: block}
	l := openLog(t, m)
	if l.Err() != nil {
		t.Fatal("Err set before any write")
	}
	l.Record(fullEvent(0))
	close(block) // the first attempt fails, then the second
	deadline := time.Now().Add(5 * time.Second)
	for l.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Err not set while writes failed")
		}
		time.Sleep(time.Millisecond)
	}
	flush(t, l)
	if l.Err() != nil {
		t.Fatalf("Err still set after a write succeeded: %v", l.Err())
	}
}

// Large statements waiting to be written hold their writers back, so that
// a client pipelining them cannot make keygate hold them all.
func TestQueuedTextIsBounded(t *testing.T) {
	block := make(chan struct{})
	m := &memStore{block: block}
	l := openLog(t, m)
	big := strings.Repeat("x", 8<<20)
	recorded := make(chan int, 32)
	go func() {
		for i := range 16 {
			l.Record(Event{Type: Query, Query: big})
			recorded <- i
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if n := len(recorded); n > maxQueuedBytes/len(big)+1 {
		t.Fatalf("%d statements of 8 MiB queued while the store was blocked, want at most %d", n, maxQueuedBytes/len(big)+1)
	}
	close(block)
	for range 16 {
		select {
		case <-recorded:
		case <-time.After(10 * time.Second):
			t.Fatal("Record stayed blocked after the store drained")
		}
	}
	flush(t, l)
	if n := len(m.snapshot()); n != 16 {
		t.Fatalf("stored %d events, want 16", n)
	}
}

// Servers sharing a store each append to a chain of their own, their
// events interleaved in the log; Verify walks every chain, and an edit or
// a removal in one names that chain.
func TestVerifyWalksEveryChain(t *testing.T) {
	twoChains := func(t *testing.T) *memStore {
		t.Helper()
		m := &memStore{}
		a, err := Open(context.Background(), m, quietLogger(), func() time.Time { return epoch }, WithChain("a"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(context.Background(), m, quietLogger(), func() time.Time { return epoch }, WithChain("b"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			a.Record(fullEvent(i))
			flush(t, a)
			b.Record(fullEvent(i))
			flush(t, b)
		}
		a.Close()
		b.Close()
		if n, err := Verify(context.Background(), m); err != nil || n != 12 {
			t.Fatalf("two untouched chains: Verify = %d, %v; want 12", n, err)
		}
		return m
	}
	m := twoChains(t)
	for i, e := range m.events {
		want := map[bool]string{true: "a", false: "b"}[i%2 == 0]
		if e.Chain != want || e.ChainSeq != int64(i/2+1) || e.Seq != int64(i+1) {
			t.Fatalf("event %d: chain %q number %d position %d", i, e.Chain, e.ChainSeq, e.Seq)
		}
	}
	// A chain reopened continues where it stopped.
	b, err := Open(context.Background(), m, quietLogger(), func() time.Time { return epoch }, WithChain("b"))
	if err != nil {
		t.Fatal(err)
	}
	b.Record(fullEvent(7))
	flush(t, b)
	b.Close()
	if last := m.events[len(m.events)-1]; last.ChainSeq != 7 || !bytes.Equal(last.PrevHash, m.events[11].Hash) {
		t.Errorf("reopened chain b: number %d, links to its last event: %v", last.ChainSeq, bytes.Equal(last.PrevHash, m.events[11].Hash))
	}

	t.Run("edited", func(t *testing.T) {
		m := twoChains(t)
		m.events[5].Query = "SELECT edited"
		verifyFails(t, m, "event 6", "hash")
	})
	t.Run("removed and renumbered", func(t *testing.T) {
		m := twoChains(t)
		m.events = slices.Delete(m.events, 3, 4)
		for i := range m.events[3:] {
			m.events[3+i].Seq--
		}
		verifyFails(t, m, "event 5", "number 3 of node b's chain", "previous event was number 1")
	})
	t.Run("moved to another chain", func(t *testing.T) {
		m := twoChains(t)
		m.events[10].Chain = "b"
		verifyFails(t, m, "event 11")
	})
}
