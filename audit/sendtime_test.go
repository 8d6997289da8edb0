package audit

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// A statement's event is written once its result is known, with the time
// it was sent: a long statement's event follows, in the chain, events of
// later times. The chain verifies, Record keeps the given time to the
// nanosecond, and time filters still find each event by its own time.
func TestTimesOutOfSequenceOrder(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := Open(ctx, st, quietLogger(), func() time.Time { return epoch.Add(time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	sentLong := epoch.Add(123456789 * time.Nanosecond)
	l.Record(Event{Time: epoch.Add(10 * time.Second), Type: Query, Query: "SELECT 'quick'", Detail: map[string]any{"n": 1}})
	l.Record(Event{Time: sentLong, Type: Query, Query: "SELECT pg_sleep(20)", Detail: map[string]any{"n": 2}})
	l.Record(Event{Type: SessionEnd, Detail: map[string]any{"n": 3}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, st); err != nil || n != 3 {
		t.Fatalf("Verify = %d, %v; want 3, nil", n, err)
	}
	all, err := st.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || !all[1].Time.Equal(sentLong) || !all[2].Time.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("stored %+v", all)
	}
	for _, tc := range []struct {
		q    store.AuditQuery
		want []int64
	}{
		{store.AuditQuery{Until: epoch.Add(time.Second)}, []int64{2}},
		{store.AuditQuery{Since: epoch.Add(time.Second), Until: epoch.Add(time.Minute)}, []int64{1}},
		{store.AuditQuery{Since: epoch}, []int64{1, 2, 3}},
		{store.AuditQuery{Since: epoch, AfterSeq: 1}, []int64{2, 3}},
	} {
		got, err := st.ListAudit(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, tc.want) {
			t.Errorf("ListAudit(%+v) = seqs %v, want %v", tc.q, seqs, tc.want)
		}
	}
}
