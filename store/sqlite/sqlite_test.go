package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "keygate.db"), clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestAuditIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AppendAudit(ctx, []store.AuditEvent{{ChainSeq: 1, Type: "x", PrevHash: []byte{0}, Hash: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.audit.w.ExecContext(ctx, `UPDATE audit_events SET query = 'tampered'`); err == nil {
		t.Fatal("UPDATE of audit_events succeeded")
	}
	if _, err := s.audit.w.ExecContext(ctx, `DELETE FROM audit_events`); err == nil {
		t.Fatal("DELETE from audit_events succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, identity.Group{Name: "analysts"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetGroup(ctx, g.ID); err != nil {
		t.Fatalf("group lost across reopen: %v", err)
	}
}

// A long statement is kept deflated: padding added to hide a statement
// costs the audit file next to nothing.
func TestLongStatementIsStoredDeflated(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	query := "select 1 /*" + strings.Repeat(" ", 1<<20) + "*/; update items set name = 'X' where id = 1"
	if err := s.AppendAudit(ctx, []store.AuditEvent{{ChainSeq: 1, Type: "query", Query: query, PrevHash: []byte{0}, Hash: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	var plain, deflated int
	if err := s.audit.w.QueryRowContext(ctx, `SELECT length(query), length(query_z) FROM audit_events`).Scan(&plain, &deflated); err != nil {
		t.Fatal(err)
	}
	if plain != 0 || deflated == 0 || deflated > 16<<10 {
		t.Errorf("a statement of %d bytes is stored as %d bytes of text and %d deflated", len(query), plain, deflated)
	}
	got, err := s.LastAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Query != query {
		t.Errorf("the statement came back with %d bytes, stored %d", len(got.Query), len(query))
	}
}

// A batch longer than one INSERT goes in whole and in order, or not at
// all: a bad event in its last INSERT leaves none of it stored.
func TestAuditBatchSpansInserts(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := func(first, n int) []store.AuditEvent {
		var events []store.AuditEvent
		for i := first; i < first+n; i++ {
			events = append(events, store.AuditEvent{ChainSeq: int64(i), Time: time.Unix(int64(i), 0).UTC(), Type: "query", Query: fmt.Sprintf("select %d", i),
				Detail: []byte(fmt.Sprintf(`{"n":%d}`, i)), PrevHash: []byte{byte(i - 1)}, Hash: []byte{byte(i)}})
		}
		return events
	}
	first := batch(1, 2*auditRowsPerInsert+3)
	if err := s.AppendAudit(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The last event repeats a stored sequence number.
	second := batch(len(first)+1, auditRowsPerInsert+1)
	second[len(second)-1].ChainSeq = 1
	if err := s.AppendAudit(ctx, second); err == nil {
		t.Fatal("AppendAudit accepted a duplicate sequence number")
	}
	got, err := s.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(first) {
		t.Fatalf("%d events stored, want the %d of the first batch", len(got), len(first))
	}
	for i, e := range got {
		want := first[i]
		if e.Seq != want.ChainSeq || e.Query != want.Query || string(e.Detail) != string(want.Detail) || !e.Time.Equal(want.Time) ||
			string(e.PrevHash) != string(want.PrevHash) || string(e.Hash) != string(want.Hash) {
			t.Fatalf("event %d came back as %+v", want.ChainSeq, e)
		}
	}
}
