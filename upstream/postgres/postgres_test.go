package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The tables every test database starts with, owned by keygate_admin.
const setupSQL = `
CREATE TABLE t (id serial PRIMARY KEY, v text);
INSERT INTO t (v) VALUES ('seed');
`

// newDatabase creates database db with setupSQL and an Upstream for it.
func newDatabase(t *testing.T, db string) (*testenv.Postgres, *Upstream) {
	t.Helper()
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, db, setupSQL)
	return p, newUpstream(t, p, db)
}

// newUpstream makes a fresh Upstream for db, as a new keygate process would.
// servers is shared by every Upstream of the test process, as the server
// shares one across its databases.
var servers = NewServers(slog.New(slog.NewTextHandler(io.Discard, nil)))

func newUpstream(t *testing.T, p *testenv.Postgres, db string) *Upstream {
	t.Helper()
	u, err := New(Config{Name: db, Address: p.Address(), Database: db, Schemas: []string{"public"},
		AdminUser: p.AdminUser, AdminPassword: p.AdminPassword, TLS: "disable"}, servers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// connect calls Connect and wraps the connection for running statements.
func connect(t *testing.T, u *Upstream, person string, level access.Level) *rawSession {
	t.Helper()
	c, err := u.Acquire(context.Background(), person, level, map[string]string{"application_name": "keygate-test"})
	if err != nil {
		t.Fatalf("Connect(%s, %s): %v", person, level, err)
	}
	return newRawSession(t, u, c)
}

// rawSession speaks the simple query protocol over a Conn that Connect
// handed out, the way the gateway's relay will.
type rawSession struct {
	t    *testing.T
	u    *Upstream
	conn *Conn
	fe   *pgproto3.Frontend
}

func newRawSession(t *testing.T, u *Upstream, c *Conn) *rawSession {
	t.Helper()
	t.Cleanup(func() { u.Release(c, false) })
	return &rawSession{t: t, u: u, conn: c, fe: pgproto3.NewFrontend(c, c)}
}

// copyRow is what a session sends if the server asks for COPY data.
const copyRow = "1000\tcopied\n"

// exec runs sql with the simple query protocol and returns the rows of the
// last result, or the first error the server reported (a *pgconn.PgError).
func (s *rawSession) exec(sql string) ([][]string, error) {
	s.t.Helper()
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer s.conn.SetDeadline(time.Time{})
	s.fe.Send(&pgproto3.Query{String: sql})
	if err := s.fe.Flush(); err != nil {
		s.t.Fatalf("send %q: %v", sql, err)
	}
	var rows [][]string
	var firstErr error
	for {
		msg, err := s.fe.Receive()
		if err != nil {
			s.t.Fatalf("%q: %v", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			rows = nil
		case *pgproto3.DataRow:
			row := make([]string, len(m.Values))
			for i, v := range m.Values {
				row[i] = string(v)
			}
			rows = append(rows, row)
		case *pgproto3.CopyInResponse:
			// The server accepted COPY FROM STDIN: give it a row, so a
			// COPY that should have been refused leaves a trace.
			s.fe.Send(&pgproto3.CopyData{Data: []byte(copyRow)})
			s.fe.Send(&pgproto3.CopyDone{})
			if err := s.fe.Flush(); err != nil {
				s.t.Fatalf("%q: %v", sql, err)
			}
		case *pgproto3.ErrorResponse:
			if firstErr == nil {
				firstErr = pgconn.ErrorResponseToPgError(m)
			}
		case *pgproto3.ReadyForQuery:
			return rows, firstErr
		}
	}
}

// value runs sql, which must succeed and return one value.
func (s *rawSession) value(sql string) string {
	s.t.Helper()
	rows, err := s.exec(sql)
	if err != nil {
		s.t.Fatalf("%q: %v", sql, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		s.t.Fatalf("%q returned %v, want one value", sql, rows)
	}
	return rows[0][0]
}

// ok runs sql, which must succeed.
func (s *rawSession) ok(sql string) {
	s.t.Helper()
	if _, err := s.exec(sql); err != nil {
		s.t.Fatalf("%q: %v", sql, err)
	}
}

// fails runs sql, which must fail with SQLSTATE code.
func (s *rawSession) fails(sql, code string) {
	s.t.Helper()
	_, err := s.exec(sql)
	wantSQLState(s.t, err, code, sql)
}

func wantSQLState(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("%s: error = %v, want SQLSTATE %s", what, err, code)
	}
	if pgErr.Code != code {
		t.Fatalf("%s: SQLSTATE %s (%s), want %s", what, pgErr.Code, pgErr.Message, code)
	}
}

// value runs sql as the superuser on db and returns its one value.
func value(t *testing.T, p *testenv.Postgres, db, sql string) string {
	t.Helper()
	rows := p.Query(t, db, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%q returned %v, want one value", sql, rows)
	}
	return rows[0][0]
}

// memberships lists the roles role is a direct member of.
func memberships(t *testing.T, p *testenv.Postgres, role string) []string {
	t.Helper()
	rows := p.Query(t, "postgres", fmt.Sprintf(`SELECT g.rolname FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
		WHERE r.rolname = %s ORDER BY 1`, literal(role)))
	var out []string
	for _, r := range rows {
		out = append(out, r[0])
	}
	return out
}

// wantAtRest checks that role exists, cannot log in and has no password.
func wantAtRest(t *testing.T, p *testenv.Postgres, role string) {
	t.Helper()
	rows := p.Query(t, "postgres", fmt.Sprintf(`SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = %s`, literal(role)))
	if len(rows) != 1 {
		t.Fatalf("role %q: %d rows in pg_authid, want 1", role, len(rows))
	}
	if rows[0][0] != "f" {
		t.Errorf("role %q: rolcanlogin = %s, want false at rest", role, rows[0][0])
	}
	if rows[0][1] != "t" {
		t.Errorf("role %q still has a password at rest", role)
	}
}

func dropRole(t *testing.T, p *testenv.Postgres, role string) {
	t.Helper()
	t.Cleanup(func() {
		// Best effort: a role that still holds privileges in a live
		// database cannot be dropped, and roles are per test anyway.
		p.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+ident(role))
	})
}

func TestConnectProvisionsReadOnlyRole(t *testing.T) {
	p, u := newDatabase(t, "up_provision")
	s := connect(t, u, "alice", access.ReadOnly)

	if s.conn.Role != "alice.ro" {
		t.Errorf("Conn.Role = %q, want alice.ro", s.conn.Role)
	}
	if s.conn.PID == 0 || len(s.conn.SecretKey) == 0 {
		t.Errorf("Conn has no cancel key: pid %d, secret %x", s.conn.PID, s.conn.SecretKey)
	}
	if s.conn.TxStatus != 'I' {
		t.Errorf("Conn.TxStatus = %q, want 'I'", s.conn.TxStatus)
	}
	if s.conn.Params["is_superuser"] != "off" || s.conn.Params["session_authorization"] != "alice.ro" {
		t.Errorf("Conn.Params = %v, want is_superuser off and session_authorization alice.ro", s.conn.Params)
	}
	if got := s.value("SELECT current_user || ' ' || session_user || ' ' || current_database()"); got != "alice.ro alice.ro up_provision" {
		t.Errorf("current_user session_user current_database = %q", got)
	}
	if got := s.value(fmt.Sprintf("SELECT pg_backend_pid() = %d", s.conn.PID)); got != "t" {
		t.Errorf("Conn.PID %d is not the backend's pid", s.conn.PID)
	}
	if got := s.value("SELECT v FROM t"); got != "seed" {
		t.Errorf("SELECT v FROM t = %q", got)
	}

	wantAtRest(t, p, "alice.ro")
	if got := memberships(t, p, "alice.ro"); !slices.Equal(got, []string{PeopleRole, "keygate_up_provision_ro"}) {
		t.Errorf("alice.ro is a member of %v, want exactly [keygate_people keygate_up_provision_ro]", got)
	}
	rows := p.Query(t, "postgres", `SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit, shobj_description(oid, 'pg_authid')
		FROM pg_roles WHERE rolname = 'alice.ro'`)
	if want := []string{"f", "f", "f", "f", "f", "t", roleMarker}; len(rows) != 1 || !slices.Equal(rows[0], want) {
		t.Errorf("alice.ro attributes = %v, want %v", rows, want)
	}
	for _, l := range access.Levels {
		g := GroupRole("up_provision", l)
		if got := value(t, p, "postgres", fmt.Sprintf("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", literal(g))); got != "f" {
			t.Errorf("group role %s: rolcanlogin = %s, want false", g, got)
		}
	}

	// A second connection reuses the role and leaves it at rest again.
	s2 := connect(t, u, "alice", access.ReadOnly)
	if got := s2.value("SELECT current_user"); got != "alice.ro" {
		t.Errorf("second connection: current_user = %q", got)
	}
	wantAtRest(t, p, "alice.ro")
	// The first connection is still alive.
	if got := s.value("SELECT 1"); got != "1" {
		t.Errorf("first connection after second: SELECT 1 = %q", got)
	}
}

func TestConnectPassesClientParams(t *testing.T) {
	p, u := newDatabase(t, "up_params")
	params := map[string]string{
		"application_name": "dbeaver-keygate-test",
		"DateStyle":        "SQL, DMY",
		"user":             "postgres",
		"database":         "postgres",
		"replication":      "database",
	}
	c, err := u.Acquire(context.Background(), "bob", access.ReadOnly, params)
	if err != nil {
		t.Fatal(err)
	}
	s := newRawSession(t, u, c)
	if got := c.Params["DateStyle"]; got != "SQL, DMY" {
		t.Errorf("ParameterStatus DateStyle = %q, want the client's SQL, DMY", got)
	}
	if got := c.Params["application_name"]; got != "dbeaver-keygate-test" {
		t.Errorf("ParameterStatus application_name = %q", got)
	}
	if got := s.value("SELECT current_user || ' ' || current_database()"); got != "bob.ro up_params" {
		t.Errorf("user and database = %q, want bob.ro up_params: the client's user/database must not pass", got)
	}
	rows := p.Query(t, "postgres", fmt.Sprintf("SELECT usename, datname, application_name, backend_type FROM pg_stat_activity WHERE pid = %d", c.PID))
	want := []string{"bob.ro", "up_params", "dbeaver-keygate-test", "client backend"}
	if len(rows) != 1 || !slices.Equal(rows[0], want) {
		t.Errorf("pg_stat_activity for pid %d = %v, want %v", c.PID, rows, want)
	}
	if params["user"] != "postgres" || params["replication"] != "database" {
		t.Errorf("Connect modified the caller's params: %v", params)
	}
}

func TestConnectCannotPickRoleThroughParams(t *testing.T) {
	p, u := newDatabase(t, "up_roleparam")
	for _, params := range []map[string]string{
		{"role": p.AdminUser},
		{"role": "keygate_up_roleparam_rw"},
		{"options": "-c role=" + p.AdminUser},
		{"session_authorization": p.AdminUser},
	} {
		c, err := u.Acquire(context.Background(), "roleparam", access.ReadOnly, params)
		if err != nil {
			// Refused at start-up by the server: fine.
			continue
		}
		s := newRawSession(t, u, c)
		if got := s.value("SELECT current_user || ' ' || session_user"); got != "roleparam.ro roleparam.ro" {
			t.Errorf("params %v: current_user session_user = %q", params, got)
		}
		s.fails("INSERT INTO t (v) VALUES ('x')", "42501")
	}
	wantAtRest(t, p, "roleparam.ro")
}

func TestFailedLoginLeavesRoleAtRest(t *testing.T) {
	p, u := newDatabase(t, "up_failedlogin")
	// The server refuses an unknown setting at start-up, after keygate has
	// opened the role for login.
	_, err := u.Acquire(context.Background(), "frank", access.ReadOnly, map[string]string{"no_such_setting": "1"})
	if err == nil {
		t.Fatal("Connect with an unknown startup parameter succeeded")
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("a server refusal is reported as ErrUnavailable: %v", err)
	}
	wantAtRest(t, p, "frank.ro")
	// And the next login works.
	s := connect(t, u, "frank", access.ReadOnly)
	if got := s.value("SELECT current_user"); got != "frank.ro" {
		t.Errorf("current_user = %q", got)
	}
	wantAtRest(t, p, "frank.ro")
}

func TestGrantsAreExact(t *testing.T) {
	p, u := newDatabase(t, "up_grants")

	ro := connect(t, u, "grace", access.ReadOnly)
	if got := ro.value("SELECT count(*) FROM t"); got != "1" {
		t.Errorf("ro: count = %s", got)
	}
	ro.value("SELECT last_value FROM t_id_seq")
	for _, sql := range []string{
		"INSERT INTO t (v) VALUES ('ro')",
		"UPDATE t SET v = 'ro'",
		"DELETE FROM t",
		"TRUNCATE t",
		"SELECT nextval('t_id_seq')",
		"CREATE TABLE ro_made (x int)",
		"CREATE SCHEMA ro_schema",
		"ALTER TABLE t ADD COLUMN ro int",
		"DROP TABLE t",
	} {
		ro.fails(sql, "42501")
	}

	rw := connect(t, u, "grace", access.ReadWrite)
	rw.ok("INSERT INTO t (v) VALUES ('rw')")
	rw.ok("UPDATE t SET v = 'rw2' WHERE v = 'rw'")
	if got := rw.value("SELECT count(*) FROM t WHERE v = 'rw2'"); got != "1" {
		t.Errorf("rw: updated rows = %s", got)
	}
	rw.ok("DELETE FROM t WHERE v = 'rw2'")
	for _, sql := range []string{
		"CREATE TABLE rw_made (x int)",
		"TRUNCATE t",
		"ALTER TABLE t ADD COLUMN rw int",
		"DROP TABLE t",
		"SELECT setval('t_id_seq', 1)",
	} {
		rw.fails(sql, "42501")
	}
	if got := memberships(t, p, "grace.rw"); !slices.Equal(got, []string{PeopleRole, "keygate_up_grants_rw"}) {
		t.Errorf("grace.rw is a member of %v", got)
	}

	admin := connect(t, u, "grace", access.Admin)
	if got := admin.value("SELECT session_user"); got != "grace.admin" {
		t.Errorf("admin: session_user = %q", got)
	}
	admin.ok("CREATE TABLE admin_made (id serial PRIMARY KEY, x int)")
	admin.ok("INSERT INTO admin_made (x) VALUES (1)")
	admin.ok("INSERT INTO t (v) VALUES ('admin')")
	if got := value(t, p, "up_grants", "SELECT tableowner FROM pg_tables WHERE tablename = 'admin_made'"); got != "keygate_up_grants_admin" {
		t.Errorf("admin_made is owned by %q, want keygate_up_grants_admin", got)
	}
	if got := value(t, p, "up_grants", "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'admin_made_id_seq'"); got != "keygate_up_grants_admin" {
		t.Errorf("admin_made_id_seq is owned by %q, want keygate_up_grants_admin", got)
	}
	if got := memberships(t, p, "grace.admin"); !slices.Equal(got, []string{PeopleRole, "keygate_up_grants_admin"}) {
		t.Errorf("grace.admin is a member of %v", got)
	}

	// What admin sessions create is covered by the other levels' grants.
	if got := ro.value("SELECT count(*) FROM admin_made"); got != "1" {
		t.Errorf("ro: count(admin_made) = %s", got)
	}
	ro.fails("INSERT INTO admin_made (x) VALUES (2)", "42501")
	rw.ok("INSERT INTO admin_made (x) VALUES (2)")

	// So is what keygate_admin (the owner of the existing objects)
	// creates after provisioning.
	if err := p.Exec(context.Background(), "up_grants", "SET ROLE keygate_admin; CREATE TABLE later (x int); INSERT INTO later VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if got := ro.value("SELECT x FROM later"); got != "7" {
		t.Errorf("ro: SELECT x FROM later = %q", got)
	}
	ro.fails("INSERT INTO later VALUES (8)", "42501")
	rw.ok("INSERT INTO later VALUES (8)")
	rw.fails("TRUNCATE later", "42501")

	for _, r := range []string{"grace.ro", "grace.rw", "grace.admin"} {
		wantAtRest(t, p, r)
	}
}

func TestReadOnlyCannotGainPrivileges(t *testing.T) {
	p, u := newDatabase(t, "up_escalate")
	// hank.rw exists, so SET ROLE to it is a meaningful attempt.
	rw := connect(t, u, "hank", access.ReadWrite)
	rw.conn.Close()

	tests := []struct {
		name    string
		attempt string
		code    string // the attempt itself must fail with this; "" if it may succeed
	}{
		{"set role to the person's rw role", `SET ROLE "hank.rw"`, "42501"},
		{"set role to the rw group", `SET ROLE keygate_up_escalate_rw`, "42501"},
		{"set role to the admin group", `SET ROLE keygate_up_escalate_admin`, "42501"},
		{"set role to keygate's admin", `SET ROLE ` + p.AdminUser, "42501"},
		{"set role to the superuser", `SET ROLE postgres`, "42501"},
		{"set_config role", `SELECT set_config('role', 'keygate_admin', false)`, "42501"},
		{"set session authorization to rw", `SET SESSION AUTHORIZATION "hank.rw"`, "42501"},
		{"set session authorization to the superuser", `SET SESSION AUTHORIZATION postgres`, "42501"},
		{"reset role", `RESET ROLE`, ""},
		{"set role to the own group", `SET ROLE keygate_up_escalate_ro`, ""},
		{"read-write transactions", `SET default_transaction_read_only = off`, ""},
		// Not the owner: PostgreSQL only warns that nothing was granted.
		{"grant to self", `GRANT INSERT ON t TO "hank.ro"`, ""},
		{"grant group to self", `GRANT keygate_up_escalate_rw TO "hank.ro"`, "42501"},
		{"alter own role", `ALTER ROLE "hank.ro" CREATEROLE`, "42501"},
		{"copy from stdin", `COPY t (id, v) FROM STDIN`, "42501"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := connect(t, u, "hank", access.ReadOnly)
			_, err := s.exec(tt.attempt)
			if tt.code != "" {
				wantSQLState(t, err, tt.code, tt.attempt)
			}
			if got := s.value("SELECT current_user || ' ' || session_user"); got != "hank.ro hank.ro" && got != "keygate_up_escalate_ro hank.ro" {
				t.Errorf("after %q: current_user session_user = %q", tt.attempt, got)
			}
			s.fails("INSERT INTO t (v) VALUES ('escalated')", "42501")
			s.fails("BEGIN READ WRITE; INSERT INTO t (v) VALUES ('escalated'); COMMIT", "42501")
			s.ok("ROLLBACK")
			s.fails("COPY t (id, v) FROM STDIN", "42501")
		})
	}
	if got := value(t, p, "up_escalate", "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("t has %s rows after the attempts, want 1", got)
	}
	if got := memberships(t, p, "hank.ro"); !slices.Equal(got, []string{PeopleRole, "keygate_up_escalate_ro"}) {
		t.Errorf("hank.ro is a member of %v after the attempts", got)
	}
}

func TestForeignRoleIsRefused(t *testing.T) {
	p, u := newDatabase(t, "up_foreign")
	if err := p.Exec(context.Background(), "postgres", `CREATE ROLE "mallory.ro" NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	dropRole(t, p, "mallory.ro")
	_, err := u.Acquire(context.Background(), "mallory", access.ReadOnly, nil)
	if err == nil || !strings.Contains(err.Error(), `role "mallory.ro" exists in the upstream database but was not created by keygate`) {
		t.Fatalf("Connect as a role keygate did not create: err = %v, want a clear refusal", err)
	}
	// keygate touched nothing.
	if got := memberships(t, p, "mallory.ro"); len(got) != 0 {
		t.Errorf("mallory.ro was made a member of %v", got)
	}
	wantAtRest(t, p, "mallory.ro")

	// A role with the wrong marker is someone else's too.
	if err := p.Exec(context.Background(), "postgres", `CREATE ROLE "mallory.rw" NOLOGIN; COMMENT ON ROLE "mallory.rw" IS 'managed by keygate, honest'`); err != nil {
		t.Fatal(err)
	}
	dropRole(t, p, "mallory.rw")
	if _, err := u.Acquire(context.Background(), "mallory", access.ReadWrite, nil); err == nil || !strings.Contains(err.Error(), "not created by keygate") {
		t.Fatalf("Connect as a role with another comment: err = %v, want a refusal", err)
	}
}

// Changes made to a person role behind keygate's back while it runs are
// caught at the next login, through the same Upstream.
func TestRoleWithForbiddenAttributeIsRefused(t *testing.T) {
	for _, attr := range []string{"SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"} {
		t.Run(attr, func(t *testing.T) {
			db := "up_attr_" + strings.ToLower(attr)
			person := "ivan_" + strings.ToLower(attr)
			role := RoleName(person, access.ReadOnly)
			p, u := newDatabase(t, db)
			connect(t, u, person, access.ReadOnly).conn.Close()

			if err := p.Exec(context.Background(), "postgres", fmt.Sprintf("ALTER ROLE %s %s", ident(role), attr)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				p.Exec(context.Background(), "postgres", fmt.Sprintf("ALTER ROLE %s NO%s", ident(role), attr))
			})
			_, err := u.Acquire(context.Background(), person, access.ReadOnly, nil)
			if err == nil || !strings.Contains(err.Error(), "which keygate never grants") {
				t.Fatalf("Connect as a role with %s: err = %v, want a refusal naming the attributes", attr, err)
			}
			wantAtRest(t, p, role)
		})
	}
}

func TestExtraMembershipIsRevoked(t *testing.T) {
	p, u := newDatabase(t, "up_extra")
	connect(t, u, "judy", access.ReadOnly).conn.Close()
	if err := p.Exec(context.Background(), "postgres", `GRANT pg_write_all_data TO "judy.ro"; GRANT keygate_up_extra_rw TO "judy.ro"`); err != nil {
		t.Fatal(err)
	}
	s := connect(t, u, "judy", access.ReadOnly)
	if got := memberships(t, p, "judy.ro"); !slices.Equal(got, []string{PeopleRole, "keygate_up_extra_ro"}) {
		t.Errorf("judy.ro is a member of %v, want exactly [keygate_people keygate_up_extra_ro]", got)
	}
	s.fails("INSERT INTO t (v) VALUES ('judy')", "42501")
	wantAtRest(t, p, "judy.ro")
}

// keygate's own admin role is conventionally named keygate_admin, which has
// the shape of a group role of level admin; membership in it would hand out
// CREATEROLE.
func TestMembershipOfKeygateAdminIsRevoked(t *testing.T) {
	p, u := newDatabase(t, "up_kgadmin")
	connect(t, u, "quinn", access.Admin).conn.Close()
	if err := p.Exec(context.Background(), "postgres", fmt.Sprintf(`GRANT %s TO "quinn.admin"`, ident(p.AdminUser))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Exec(context.Background(), "postgres", fmt.Sprintf(`REVOKE %s FROM "quinn.admin"`, ident(p.AdminUser)))
	})
	s := connect(t, u, "quinn", access.Admin)
	if got := memberships(t, p, "quinn.admin"); !slices.Equal(got, []string{PeopleRole, "keygate_up_kgadmin_admin"}) {
		t.Errorf("quinn.admin is a member of %v, want exactly [keygate_people keygate_up_kgadmin_admin]", got)
	}
	s.fails("SET ROLE "+ident(p.AdminUser), "42501")
	s.fails(`CREATE ROLE quinn_made`, "42501")
	wantAtRest(t, p, "quinn.admin")
}

// Logins that fail do not close the login window under the feet of
// concurrent logins that succeed.
func TestConcurrentConnectsSomeFailing(t *testing.T) {
	p, u := newDatabase(t, "up_mixed")
	connect(t, u, "rita", access.ReadOnly).conn.Close()
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := map[string]string{"application_name": "mixed"}
			if i%4 == 0 {
				params["no_such_setting"] = "1"
			}
			<-start
			c, err := u.Acquire(context.Background(), "rita", access.ReadOnly, params)
			if err == nil {
				c.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if bad := i%4 == 0; bad != (err != nil) {
			t.Errorf("Connect %d (bad parameter: %t): %v", i, bad, err)
		}
	}
	wantAtRest(t, p, "rita.ro")
}

func TestSuperuserMembershipIsRefused(t *testing.T) {
	p, u := newDatabase(t, "up_supermember")
	connect(t, u, "kate", access.ReadOnly).conn.Close()
	if err := p.Exec(context.Background(), "postgres", `GRANT postgres TO "kate.ro"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Exec(context.Background(), "postgres", `REVOKE postgres FROM "kate.ro"`) })
	c, err := u.Acquire(context.Background(), "kate", access.ReadOnly, nil)
	if err == nil {
		// keygate could not revoke it, so it must not hand the role out.
		s := newRawSession(t, u, c)
		_, setErr := s.exec("SET ROLE postgres")
		t.Fatalf("Connect as a member of a superuser role succeeded; SET ROLE postgres: %v", setErr)
	}
	wantAtRest(t, p, "kate.ro")
}

func TestConcurrentConnectsSameRole(t *testing.T) {
	p, u := newDatabase(t, "up_concurrent")
	const n = 20
	conns := make([]*Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = u.Acquire(context.Background(), "leo", access.ReadWrite, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Connect %d: %v", i, errs[i])
			continue
		}
		s := newRawSession(t, u, conns[i])
		if got := s.value("SELECT current_user"); got != "leo.rw" {
			t.Errorf("Connect %d: current_user = %q", i, got)
		}
	}
	wantAtRest(t, p, "leo.rw")
	if got := memberships(t, p, "leo.rw"); !slices.Equal(got, []string{PeopleRole, "keygate_up_concurrent_rw"}) {
		t.Errorf("leo.rw is a member of %v", got)
	}
}

// Roles are cluster-wide: two databases on one server share a person's
// role, and their Upstreams share one login window per role.
func TestConcurrentConnectsSameRoleTwoUpstreams(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_shared_a", setupSQL)
	p.CreateDatabase(t, "up_shared_b", setupSQL)
	ups := []*Upstream{newUpstream(t, p, "up_shared_a"), newUpstream(t, p, "up_shared_b")}
	// Provision first, one at a time, so that the logins below overlap.
	for _, u := range ups {
		connect(t, u, "mike", access.ReadOnly).conn.Close()
	}
	const n = 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := ups[i%2].Acquire(context.Background(), "mike", access.ReadOnly, nil)
			if err != nil {
				errs <- fmt.Errorf("Connect %d to %s: %w", i, ups[i%2].cfg.Database, err)
				return
			}
			c.Close()
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantAtRest(t, p, "mike.ro")
}

func TestCancel(t *testing.T) {
	p, u := newDatabase(t, "up_cancel")
	s := connect(t, u, "nina", access.ReadOnly)

	s.fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	if err := s.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	// A cancel that arrives before the statement starts is ignored by the
	// server: wait until it runs.
	deadline := time.Now().Add(10 * time.Second)
	for value(t, p, "postgres", fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active' AND wait_event = 'PgSleep'", s.conn.PID)) != "1" {
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep did not start within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := u.Cancel(ctx, s.conn); err != nil {
		t.Fatal(err)
	}
	s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	var pgErr *pgconn.PgError
	for {
		msg, err := s.fe.Receive()
		if err != nil {
			t.Fatalf("reading the cancelled query's result: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok && pgErr == nil {
			pgErr = pgconn.ErrorResponseToPgError(e)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	s.conn.SetDeadline(time.Time{})
	wantSQLState(t, pgErr, "57014", "SELECT pg_sleep(30) after Cancel")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %s", d)
	}
	// The session survives a cancel.
	if got := s.value("SELECT 1"); got != "1" {
		t.Errorf("SELECT 1 after cancel = %q", got)
	}
}

func TestCancelUnreachable(t *testing.T) {
	u, err := New(Config{Name: "gone", Address: "127.0.0.1:1", Database: "gone", TLS: "disable", AdminUser: "x"}, servers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Cancel(context.Background(), &Conn{PID: 1, SecretKey: []byte{1, 2, 3, 4}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Cancel on a closed port: %v, want ErrUnavailable", err)
	}
	if _, err := u.Acquire(context.Background(), "olga", access.ReadOnly, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Acquire on a closed port: %v, want ErrUnavailable", err)
	}
	if err := u.Check(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Check on a closed port: %v, want ErrUnavailable", err)
	}
}

func TestCheck(t *testing.T) {
	p := testenv.StartPostgres(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	good, err := New(Config{Name: "check", Address: p.Address(), Database: "postgres", TLS: "disable", AdminUser: p.AdminUser, AdminPassword: p.AdminPassword}, servers, log)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := good.Check(context.Background()); err != nil {
		t.Errorf("Check with a CREATEROLE admin: %v", err)
	}

	if err := p.Exec(context.Background(), "postgres", "CREATE ROLE keygate_nocreaterole LOGIN PASSWORD 'nocr-password'"); err != nil {
		t.Fatal(err)
	}
	dropRole(t, p, "keygate_nocreaterole")
	bad, err := New(Config{Name: "check", Address: p.Address(), Database: "postgres", TLS: "disable", AdminUser: "keygate_nocreaterole", AdminPassword: "nocr-password"}, servers, log)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), `keygate_nocreaterole, the admin role of database check, lacks CREATEROLE, pg_signal_backend, pg_read_all_stats`) ||
		!strings.Contains(err.Error(), `ALTER ROLE keygate_nocreaterole CREATEROLE; GRANT pg_signal_backend TO keygate_nocreaterole; GRANT pg_read_all_stats TO keygate_nocreaterole;`) {
		t.Errorf("Check without CREATEROLE: %v, want one naming the fix", err)
	}
	if errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrPrivileges) {
		t.Errorf("a missing privilege is not reported as ErrPrivileges: %v", err)
	}
}

func TestMissingSchema(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_noschema", setupSQL)
	u, err := New(Config{Name: "up_noschema", Address: p.Address(), Database: "up_noschema", Schemas: []string{"public", "nosuch"},
		AdminUser: p.AdminUser, AdminPassword: p.AdminPassword, TLS: "disable"}, servers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Acquire(context.Background(), "pete", access.ReadOnly, nil); err == nil || !strings.Contains(err.Error(), `schema "nosuch" does not exist`) {
		t.Errorf("Connect with a missing schema: %v", err)
	}
}

// A person with admin access owns objects in the configured schemas. A
// function planted there that shadows a built-in must never run as
// keygate's admin role (the CVE-2018-1058 pattern), not even through a fresh
// admin connection.
func TestPlantedFunctionsDoNotRunAsAdmin(t *testing.T) {
	p, u := newDatabase(t, "up_plant")
	connect(t, u, "owen", access.Admin).conn.Close()
	// An aggregate over name is a better match than the built-in
	// array_agg(anynonarray) for every query keygate runs over role names.
	plant := `SET ROLE keygate_up_plant_admin;
		CREATE FUNCTION public.trap(name[]) RETURNS name[] LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'planted function ran as %', current_user; END $$;
		CREATE AGGREGATE public.array_agg(name) (SFUNC = pg_catalog.array_append, STYPE = name[], FINALFUNC = public.trap);
		CREATE FUNCTION public.bool_or(boolean) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'planted function ran as %', current_user; END $$;`
	if err := p.Exec(context.Background(), "up_plant", plant); err != nil {
		t.Fatal(err)
	}
	fresh := newUpstream(t, p, "up_plant")
	for _, person := range []string{"owen", "pia"} {
		c, err := fresh.Acquire(context.Background(), person, access.Admin, nil)
		if err != nil {
			t.Fatalf("Connect %s after the plant: %v", person, err)
		}
		c.Close()
	}
}

// A group role is a member of nothing: a grant to it would reach everyone
// at that level, so keygate takes it back at the next login.
func TestGroupRoleMembershipIsRevoked(t *testing.T) {
	p, u := newDatabase(t, "up_groupgrant")
	connect(t, u, "gail", access.ReadOnly).conn.Close()
	if err := p.Exec(context.Background(), "postgres", `GRANT pg_write_all_data TO keygate_up_groupgrant_ro`); err != nil {
		t.Fatal(err)
	}
	s := connect(t, u, "gail", access.ReadOnly)
	if got := memberships(t, p, "keygate_up_groupgrant_ro"); len(got) != 0 {
		t.Fatalf("keygate_up_groupgrant_ro is still a member of %v", got)
	}
	s.fails("INSERT INTO t (v) VALUES ('gail')", "42501")
}

// A database that joins a login window another database on the same server
// opened still gives the role its own group membership.
func TestJoiningAnOpenWindowSetsUpTheRole(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_join_a", setupSQL)
	p.CreateDatabase(t, "up_join_b", setupSQL)
	a, b := newUpstream(t, p, "up_join_a"), newUpstream(t, p, "up_join_b")
	ctx := context.Background()
	if err := a.ensureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	role := RoleName("hugo", access.ReadOnly)
	w := a.server.window(role)
	_, gen, err := a.openLogin(ctx, w, role, access.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	s := connect(t, b, "hugo", access.ReadOnly)
	if got := s.value("SELECT count(*) FROM t"); got == "" {
		t.Fatal("no answer")
	}
	a.closeLogin(w, gen, role, nil)
	wantAtRest(t, p, role)
}
