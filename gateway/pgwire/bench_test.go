package pgwire

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/token"
)

// BenchmarkSimpleQuery is the per-statement path of a steady session: a
// simple Query relayed to a real PostgreSQL and audited to a real SQLite
// audit log, as pgbench -S sends it. Profile it with -cpuprofile and look
// at the gateway's own frames: the client's TLS and PostgreSQL's work are
// in the same process or beside it. cpu-ns/op is this process's CPU time
// per statement: the gateway, its audit and the client's side.
func BenchmarkSimpleQuery(b *testing.B) {
	ctx := context.Background()
	f := newRelay(b, "bench")
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "keygate.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	log, err := audit.Open(ctx, st, discard, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	f.srv.Gateway = gateway.New(&token.Verifier{Keys: f.keys, Now: time.Now}, authorizer{allow: true}, log, discard, nil)
	be := f.connect(b, "alice", access.ReadOnly)
	q := &pgproto3.Query{String: "SELECT note FROM items WHERE id = 1"}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime(b)
	for range b.N {
		be.send(q)
		for {
			if _, ok := be.next().(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	}
	if err := log.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((testenv.CPUTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
