package pgwire

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
)

// Which statements a session records, message by message.
func TestAuditOfStatements(t *testing.T) {
	rec := &recorder{}
	s := &session{gw: gateway.New(nil, nil, rec, slog.New(slog.NewTextHandler(io.Discard, nil)), nil), gs: &gateway.Session{User: "alice"}}
	feed := func(m pgproto3.FrontendMessage) {
		t.Helper()
		raw := encode(t, m)
		s.audit(raw[0], raw[5:], len(raw)-5)
	}
	feed(&pgproto3.Query{String: "SELECT 1"})
	feed(&pgproto3.Parse{Query: "SELECT $1::int /* unnamed */"})
	feed(&pgproto3.Bind{})
	feed(&pgproto3.Parse{Name: "stmtcache_1", Query: "SELECT $1::int /* named */"})
	feed(&pgproto3.Describe{ObjectType: 'S', Name: "stmtcache_1"})
	for range 3 {
		feed(&pgproto3.Bind{PreparedStatement: "stmtcache_1", Parameters: [][]byte{[]byte("7")}})
	}
	feed(&pgproto3.Bind{PreparedStatement: "from_sql_prepare"})
	feed(&pgproto3.Close{ObjectType: 'S', Name: "stmtcache_1"})
	feed(&pgproto3.Bind{PreparedStatement: "stmtcache_1"})

	var got []string
	for _, e := range rec.ofType(audit.Query) {
		got = append(got, e.Query)
	}
	want := []string{
		"SELECT 1",
		"SELECT $1::int /* unnamed */",
		"SELECT $1::int /* named */", "SELECT $1::int /* named */", "SELECT $1::int /* named */",
		`[execute prepared statement "from_sql_prepare"]`,
		`[execute prepared statement "stmtcache_1"]`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audited\n%q\nwant\n%q", got, want)
	}
}

// A statement longer than what the reader holds is recorded as a prefix
// with a marker.
func TestStatementTextTruncated(t *testing.T) {
	if got := statementText([]byte("SELECT 1\x00"), 9); got != "SELECT 1" {
		t.Fatalf("whole statement: %q", got)
	}
	got := statementText([]byte(strings.Repeat("x", 10)), 100)
	if !strings.HasPrefix(got, strings.Repeat("x", 10)) || !strings.Contains(got, "longer than 10 bytes") {
		t.Fatalf("prefix: %q", got)
	}
}
