package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// The audit says what each statement came to: alice, who reads only, is
// refused an INSERT (42501), and bob's INSERT is recorded with its command
// tag; a simple Query of several statements has one outcome for each.
func TestAuditRecordsOutcomes(t *testing.T) {
	s := startServer(t, "outcome", "", true)
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "bob", "engineers")

	const refused = "INSERT INTO customers (name) VALUES ('by alice')"
	r := s.psql(t, s.connString("alice", "orders"), s.token(t, "alice", "orders"), refused)
	if r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("alice's INSERT: exit %d, %s", r.code, r.stderr)
	}
	const inserted = "INSERT INTO customers (name) VALUES ('by bob')"
	const multi = inserted + "; SELECT 1/0"
	tok := s.token(t, "bob", "orders", "--access", "rw")
	if r := s.psql(t, s.connString("bob", "orders"), tok, inserted); r.code != 0 {
		t.Fatalf("bob's INSERT: %s", r.stderr)
	}
	s.psql(t, s.connString("bob", "orders"), tok, multi)
	// With the extended protocol too: pgx sends Parse, Bind, Execute.
	c := s.pgx(t, "bob", "orders", tok)
	if _, err := c.Exec(t.Context(), "INSERT INTO customers (name) VALUES ('by bob, extended')").ReadAll(); err != nil {
		t.Fatal(err)
	}
	c.Close(t.Context())

	events := s.audit(t, "--type", "query")
	outcomeOf := func(who, q string) string {
		t.Helper()
		e, ok := findEvent(events, func(e api.AuditEvent) bool { return e.User == who && e.Query == q })
		if !ok {
			t.Fatalf("no query event of %s for %q", who, q)
		}
		return fmt.Sprint(e.Detail["outcome"])
	}
	for _, tc := range []struct{ who, query, want string }{
		{"alice", refused, "sqlstate:42501"},
		{"bob", inserted, "map[tag:INSERT 0 1]"},
		{"bob", multi, "[map[tag:INSERT 0 1] map[error:division by zero sqlstate:22012]]"},
		{"bob", "INSERT INTO customers (name) VALUES ('by bob, extended')", "[map[tag:INSERT 0 1]]"},
	} {
		if got := outcomeOf(tc.who, tc.query); !strings.Contains(got, tc.want) {
			t.Errorf("outcome of %s's %q = %s, want %s", tc.who, tc.query, got, tc.want)
		}
	}
	// The table shows it too.
	out := s.kg(t, 0, "audit", "--user", "alice", "--type", "query")
	mustContain(t, "keygate audit", out, "ERROR 42501 permission denied for table customers")
}

// With owner_role set, an admin-level person alters a table the
// application's owner role owns; a read-write person still cannot.
func TestAdminAltersTablesOfTheOwnerRole(t *testing.T) {
	const owner = "e2e_app_owner"
	s := startServerWith(t, "ownerrole", serverOptions{stopWithTest: true,
		ordersSetup: fmt.Sprintf(`DO $$ BEGIN CREATE ROLE %[1]s NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
			GRANT %[1]s TO keygate_admin WITH ADMIN OPTION;
			CREATE TABLE inventory (id serial PRIMARY KEY, sku text NOT NULL);
			ALTER TABLE inventory OWNER TO %[1]s;
			ALTER SEQUENCE inventory_id_seq OWNER TO %[1]s;`, owner),
		ordersConfig: "    owner_role: " + owner + "\n"})
	s.addUser(t, "dana", "dbadmins")
	s.addUser(t, "bob", "engineers")

	r := s.psql(t, s.connString("dana", "orders"), s.token(t, "dana", "orders", "--access", "admin"),
		"ALTER TABLE inventory ADD COLUMN note text")
	if r.code != 0 {
		t.Fatalf("admin-level ALTER TABLE on %s's table: %s", owner, r.stderr)
	}
	cols := s.upstreamQuery(t, "ownerrole_orders", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'inventory' AND column_name = 'note'")
	if cols[0][0] != "1" {
		t.Fatal("the column was not added")
	}
	r = s.psql(t, s.connString("bob", "orders"), s.token(t, "bob", "orders", "--access", "rw"),
		"ALTER TABLE inventory ADD COLUMN by_bob text")
	if r.code == 0 || !strings.Contains(r.stderr, "must be owner") {
		t.Fatalf("read-write ALTER TABLE: exit %d, %s", r.code, r.stderr)
	}
	r = s.psql(t, s.connString("bob", "orders"), s.token(t, "bob", "orders", "--access", "rw"), "SET ROLE "+owner)
	if r.code == 0 {
		t.Fatal("a read-write person took the owner role with SET ROLE")
	}
}
