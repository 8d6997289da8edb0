package e2e

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// The audit chain verifies after real traffic, and an edit made behind
// keygate's back — dropping the append-only trigger and rewriting a
// statement — is found by `keygate audit verify`.
func TestAuditChainDetectsTampering(t *testing.T) {
	s := startServer(t, "tamper", "", true)
	s.addUser(t, "tess", "analysts")
	r := s.psql(t, s.connString("tess", "orders"), s.token(t, "tess", "orders"), "SELECT 'tamper-marker', count(*) FROM orders")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	out := s.kg(t, 0, "audit", "verify")
	mustContain(t, "audit verify", out, "audit log intact")

	s.stop(t)
	db, err := sql.Open("sqlite", filepath.Join(s.dir, "data", "keygate-audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET query = 'SELECT 1' WHERE query LIKE '%tamper-marker%'`); err == nil {
		t.Fatal("the audit table accepted an UPDATE")
	}
	for _, stmt := range []string{
		`DROP TRIGGER audit_events_no_update`,
		`UPDATE audit_events SET query = 'SELECT 1' WHERE query LIKE '%tamper-marker%'`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	s.launch(t)
	res := s.run(t, nil, "audit", "verify")
	if res.code == 0 {
		t.Fatalf("audit verify passed a tampered log: %s", res.stdout)
	}
	mustContain(t, "audit verify", res.stderr, "its content does not match its hash")
	if strings.Contains(res.stdout, "intact") {
		t.Fatalf("audit verify printed %q", res.stdout)
	}
}
