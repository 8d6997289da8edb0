package audit

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/store/sqlite"
)

// BenchmarkRecordStatement is the audit's cost per statement, as a
// gateway records one: a query event with its outcome and duration, written
// through to the SQLite audit file. cpu-ns/op is the process's CPU time
// per event, writer included, which wall time on a busy machine hides.
func BenchmarkRecordStatement(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "keygate.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	l, err := Open(ctx, st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	sent := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime(b)
	for range b.N {
		l.Record(Event{Time: sent, Type: Query, User: "alice@example.com", Database: "orders", Access: "read", Client: "10.0.0.7:51234",
			SessionID: "9f2c1d7e4a5b6c3d", Query: "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
			Detail: map[string]any{"protocol": "simple", "duration_ms": 0.183, "outcome": []any{map[string]any{"tag": "SELECT 1"}}}})
	}
	if err := l.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((testenv.CPUTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
