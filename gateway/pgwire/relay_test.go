package pgwire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// servers is shared by the upstreams of the whole test process, as a
// keygate server shares one.
var servers = postgres.NewServers(slog.New(slog.NewTextHandler(io.Discard, nil)))

// relayFixture is a gateway in front of a real PostgreSQL database.
type relayFixture struct {
	*gatewayFixture
	pg *testenv.Postgres
	db string
}

func newRelay(t testing.TB, db string) *relayFixture {
	t.Helper()
	pg := testenv.StartPostgres(t)
	pg.CreateDatabase(t, db, `CREATE TABLE items (id serial PRIMARY KEY, note text, at timestamptz NOT NULL DEFAULT clock_timestamp());
		INSERT INTO items (note) VALUES ('a')`)
	u, err := postgres.New(postgres.Config{Name: "orders", Address: pg.Address(), Database: db, Schemas: []string{"public"},
		AdminUser: pg.AdminUser, AdminPassword: pg.AdminPassword, TLS: "disable"}, servers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	g.srv.Upstreams = map[string]Upstream{"orders": u}
	return &relayFixture{gatewayFixture: g, pg: pg, db: db}
}

// connect logs in as user at level and reads up to the first
// ReadyForQuery.
func (f *relayFixture) connect(t testing.TB, user string, level access.Level) *backend {
	t.Helper()
	tok, _, err := f.issuer.Mint(token.Claims{User: user, Database: "orders", Access: level, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.serve(t)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	be := newBackend(t, f.startTLS(t, c))
	be.send(startup(map[string]string{"user": user, "database": "orders"}))
	be.next()
	be.send(&pgproto3.PasswordMessage{Password: tok})
	be.until(t, "login")
	return be
}

// reply is what the server answered a batch with, up to ReadyForQuery.
type reply struct {
	types string // message types in order
	rows  []string
	tags  []string
	errs  []*pgconn.PgError
}

// until reads messages up to ReadyForQuery.
func (b *backend) until(t testing.TB, what string) reply {
	t.Helper()
	var r reply
	for {
		m := b.next()
		switch m := m.(type) {
		case *pgproto3.ParseComplete:
			r.types += "1"
		case *pgproto3.BindComplete:
			r.types += "2"
		case *pgproto3.CloseComplete:
			r.types += "3"
		case *pgproto3.ParameterDescription:
			r.types += "t"
		case *pgproto3.RowDescription:
			r.types += "T"
		case *pgproto3.NoData:
			r.types += "n"
		case *pgproto3.PortalSuspended:
			r.types += "s"
		case *pgproto3.DataRow:
			r.types += "D"
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, string(v))
			}
			r.rows = append(r.rows, strings.Join(vals, "|"))
		case *pgproto3.CommandComplete:
			r.types += "C"
			r.tags = append(r.tags, string(m.CommandTag))
		case *pgproto3.FunctionCallResponse:
			r.types += "V"
			r.rows = append(r.rows, string(m.Result))
		case *pgproto3.ErrorResponse:
			r.types += "E"
			pgErr := pgconn.ErrorResponseToPgError(m)
			if pgErr.Severity == "FATAL" {
				t.Fatalf("%s: FATAL %s %s", what, pgErr.Code, pgErr.Message)
			}
			r.errs = append(r.errs, pgErr)
		case *pgproto3.ReadyForQuery:
			return r
		}
	}
}

func (f *relayFixture) upstream(t testing.TB, sql string) string {
	t.Helper()
	rows := f.pg.Query(t, f.db, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%q returned %v", sql, rows)
	}
	return rows[0][0]
}

// executions are the texts of the audited executions, in order.
func (f *relayFixture) executions() []string {
	var out []string
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["protocol"] == "execute" {
			out = append(out, e.Query)
		}
	}
	return out
}

func wantCode(t *testing.T, r reply, code string) {
	t.Helper()
	if len(r.errs) == 0 || r.errs[0].Code != code {
		t.Fatalf("reply %q with errors %v, want SQLSTATE %s", r.types, r.errs, code)
	}
}

// A named statement is kept by keygate and never reaches the upstream
// under its name; every execution is recorded with its text.
func TestNamedStatementsRunAsTheUnnamedOne(t *testing.T) {
	f := newRelay(t, "pw_named")
	be := f.connect(t, "alice", access.ReadOnly)
	be.send(&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int + 1"}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	if r := be.until(t, "prepare"); r.types != "1tT" {
		t.Fatalf("prepare: %q, want ParseComplete, ParameterDescription, RowDescription", r.types)
	}
	// pgx's way: a second statement in between, so that s1 must be
	// parsed upstream again.
	for i := range 3 {
		be.send(&pgproto3.Parse{Name: "s2", Query: "SELECT 'other'"}, &pgproto3.Sync{})
		be.until(t, "s2")
		be.send(&pgproto3.Close{ObjectType: 'S', Name: "s2"}, &pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte(fmt.Sprint(i))}},
			&pgproto3.Execute{}, &pgproto3.Sync{})
		r := be.until(t, "execute")
		if r.types != "32DC" || r.rows[0] != fmt.Sprint(i+1) {
			t.Fatalf("execution %d: %q %v", i, r.types, r.rows)
		}
	}
	be.send(&pgproto3.Query{String: "SELECT count(*) FROM pg_prepared_statements"})
	if r := be.until(t, "count"); r.rows[0] != "0" {
		t.Errorf("the upstream holds %s prepared statements, want none", r.rows[0])
	}
	got := f.executions()
	if len(got) != 3 || got[0] != "SELECT $1::int + 1" || got[2] != "SELECT $1::int + 1" {
		t.Errorf("executions recorded: %q", got)
	}
}

// SQL cannot re-point a name the client prepared: DEALLOCATE alone is
// answered by keygate, and dynamic SQL finds no such statement upstream.
func TestPreparedNameCannotBeRepointed(t *testing.T) {
	f := newRelay(t, "pw_repoint")
	be := f.connect(t, "bob", access.ReadWrite)
	be.send(&pgproto3.Parse{Name: "report", Query: "SELECT note FROM items WHERE id = 1"}, &pgproto3.Sync{})
	be.until(t, "prepare")
	be.send(&pgproto3.Query{String: `DO $$ BEGIN EXECUTE 'DEALLOC' || 'ATE report'; END $$`})
	wantCode(t, be.until(t, "dynamic deallocate"), "26000")
	be.send(&pgproto3.Query{String: `DO $$ BEGIN EXECUTE 'PREP' || 'ARE report AS UPDATE items SET note = ''Z'' WHERE id = 1'; END $$`})
	be.until(t, "dynamic prepare")
	be.send(&pgproto3.Bind{PreparedStatement: "report"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if r := be.until(t, "execute"); len(r.tags) != 1 || r.tags[0] != "SELECT 1" {
		t.Fatalf("report ran %v, want the SELECT it was prepared as", r.tags)
	}
	if got := f.upstream(t, "SELECT note FROM items WHERE id = 1"); got != "a" {
		t.Fatalf("the UPDATE ran: note = %q", got)
	}
	// DEALLOCATE on its own works as in PostgreSQL.
	be.send(&pgproto3.Query{String: "DEALLOCATE report"})
	if r := be.until(t, "deallocate"); len(r.errs) != 0 || r.tags[0] != "DEALLOCATE" {
		t.Fatalf("DEALLOCATE report: %q %v", r.types, r.errs)
	}
	// Now the name is the one made with SQL PREPARE: it runs under its
	// own name upstream, and the audit does not claim its text.
	be.send(&pgproto3.Bind{PreparedStatement: "report"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if r := be.until(t, "sql prepared"); len(r.tags) != 1 || r.tags[0] != "UPDATE 1" {
		t.Fatalf("the statement made with SQL PREPARE ran %v", r.tags)
	}
	got := f.executions()
	if len(got) != 2 || got[0] != "SELECT note FROM items WHERE id = 1" || !strings.HasPrefix(got[1], `[execute prepared statement "report" made with SQL PREPARE`) {
		t.Errorf("executions recorded: %q", got)
	}
}

// Errors keep the statement state as PostgreSQL has it: a duplicate name
// is refused and the rest of its batch ignored, a Parse the server rejects
// defines nothing, and a Close forgets.
func TestStatementStateFollowsTheServer(t *testing.T) {
	f := newRelay(t, "pw_state")
	be := f.connect(t, "carl", access.ReadOnly)
	be.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	be.until(t, "s1")
	be.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 2"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r := be.until(t, "duplicate")
	wantCode(t, r, "42P05")
	if r.types != "E" {
		t.Fatalf("after a duplicate Parse: %q, want only the error", r.types)
	}
	be.send(&pgproto3.Parse{Name: "bad", Query: "SELEKT"}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "syntax"), "42601")
	be.send(&pgproto3.Bind{PreparedStatement: "bad"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "bind bad"), "26000")
	// An error earlier in the batch: the Parse after it is skipped.
	be.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Parse{Name: "s3", Query: "SELECT 3"}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "division"), "22012")
	be.send(&pgproto3.Bind{PreparedStatement: "s3"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "skipped parse"), "26000")
	be.send(&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	if r := be.until(t, "close"); r.types != "3" {
		t.Fatalf("close: %q", r.types)
	}
	be.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "closed"), "26000")
	// Batches sent without waiting for replies.
	be.send(&pgproto3.Parse{Name: "s4", Query: "SELECT 4"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s4"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	be.until(t, "pipelined parse")
	if r := be.until(t, "pipelined execute"); r.types != "2DC" || r.rows[0] != "4" {
		t.Fatalf("pipelined: %q %v", r.types, r.rows)
	}
}

// An unnamed statement parsed once and executed three times is recorded
// three times, each with its text, and not a fourth time for the Parse.
func TestEveryExecuteIsRecorded(t *testing.T) {
	f := newRelay(t, "pw_execute")
	be := f.connect(t, "dina", access.ReadOnly)
	be.send(&pgproto3.Parse{Query: "SELECT 42"})
	for range 3 {
		be.send(&pgproto3.Bind{}, &pgproto3.Execute{})
	}
	be.send(&pgproto3.Sync{})
	be.until(t, "three executions")
	got := f.executions()
	if len(got) != 3 || got[0] != "SELECT 42" || got[2] != "SELECT 42" {
		t.Fatalf("executions recorded: %q", got)
	}
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["protocol"] == "parse" {
			t.Errorf("the executed unnamed Parse was recorded on its own too: %+v", e)
		}
	}
	// A Parse that is never executed is recorded at the Sync.
	be.send(&pgproto3.Parse{Query: "SELECT 'described only'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	be.until(t, "describe")
	var parsed []string
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["protocol"] == "parse" {
			parsed = append(parsed, e.Query)
		}
	}
	if len(parsed) != 1 || parsed[0] != "SELECT 'described only'" {
		t.Errorf("parses recorded: %q", parsed)
	}
}

// A portal closed and declared again in SQL between its Bind and an
// Execute is not claimed to run its old text.
func TestRedeclaredPortalIsNotVouchedFor(t *testing.T) {
	f := newRelay(t, "pw_portal")
	be := f.connect(t, "eric", access.ReadOnly)
	be.send(&pgproto3.Query{String: "BEGIN"})
	be.until(t, "begin")
	be.send(&pgproto3.Parse{Query: "SELECT generate_series(1, 3)"}, &pgproto3.Bind{DestinationPortal: "c1"},
		&pgproto3.Execute{Portal: "c1", MaxRows: 1}, &pgproto3.Sync{})
	if r := be.until(t, "first row"); !strings.HasSuffix(r.types, "Ds") {
		t.Fatalf("first fetch: %q", r.types)
	}
	be.send(&pgproto3.Query{String: "CLOSE c1; DECLARE c1 CURSOR FOR SELECT 'other'"})
	be.until(t, "redeclare")
	be.send(&pgproto3.Execute{Portal: "c1"}, &pgproto3.Sync{})
	if r := be.until(t, "second fetch"); len(r.rows) != 1 || r.rows[0] != "other" {
		t.Fatalf("second fetch: %v", r.rows)
	}
	var last audit.Event
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["protocol"] == "execute" {
			last = e
		}
	}
	if last.Detail["unverified"] != true || !strings.Contains(last.Query, "may have been declared again") {
		t.Errorf("the execution after the re-declaration was recorded as %q %v", last.Query, last.Detail)
	}
}

// FunctionCall runs libpq's large-object functions, recorded by name and
// arguments, and nothing else.
func TestFunctionCalls(t *testing.T) {
	f := newRelay(t, "pw_fcall")
	be := f.connect(t, "fred", access.ReadWrite)
	be.send(&pgproto3.FunctionCall{Function: 2924, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("select note from items"), []byte("true"), []byte("false"), []byte("")}})
	r := be.until(t, "query_to_xml")
	wantCode(t, r, "42501")
	if r.types != "E" || !strings.Contains(r.errs[0].Message, "function call of OID 2924 refused") {
		t.Fatalf("query_to_xml: %q %v", r.types, r.errs)
	}
	if ev := f.audit.OfType(audit.QueryRefused); len(ev) != 1 || ev[0].Detail["oid"] != uint32(2924) {
		t.Fatalf("query.refused events: %+v", ev)
	}
	be.send(&pgproto3.FunctionCall{Function: 957, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0x6, 0}}, ResultFormatCode: 1})
	if r := be.until(t, "lo_creat"); r.types != "V" {
		t.Fatalf("lo_creat: %q %v", r.types, r.errs)
	}
	var calls []string
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["protocol"] == "function" {
			calls = append(calls, e.Query)
		}
	}
	if len(calls) != 1 || calls[0] != "lo_creat(1536)" {
		t.Errorf("function calls recorded: %q", calls)
	}
	be.send(&pgproto3.Query{String: "SELECT 1"})
	be.until(t, "after the calls")
}

// A statement longer than the audit keeps whole is refused before any of
// it reaches the upstream, and the session ends.
func TestOversizedStatementIsRefused(t *testing.T) {
	f := newRelay(t, "pw_oversized")
	f.srv.MaxStatement = 4 << 10
	be := f.connect(t, "gina", access.ReadWrite)
	text := "select 1 /*" + strings.Repeat(" ", 8<<10) + "*/; update items set note = 'X' where id = 1"
	be.send(&pgproto3.Query{String: text})
	be.fatal("54000", fmt.Sprintf("keygate: statement of %d bytes refused", len(text)))
	if got := f.upstream(t, "SELECT note FROM items WHERE id = 1"); got != "a" {
		t.Fatalf("the refused statement ran: note = %q", got)
	}
	sum := sha256.Sum256([]byte(text))
	ev := f.audit.OfType(audit.QueryRefused)
	if len(ev) != 1 || ev[0].Detail["length"] != len(text) || ev[0].Detail["sha256"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("query.refused = %+v", ev)
	}
	waitFor(t, func() bool { return len(f.audit.OfType(audit.SessionEnd)) == 1 })
}

// An operator who runs long statements gets their head, tail, length and
// hash in the audit.
func TestOversizedStatementIsTruncatedOnRequest(t *testing.T) {
	f := newRelay(t, "pw_truncate")
	f.srv.MaxStatement, f.srv.TruncateOversized = 4<<10, true
	be := f.connect(t, "hugo", access.ReadWrite)
	text := "select 1 /*" + strings.Repeat(" ", 8<<10) + "*/; update items set note = 'T' where id = 1; select 2 /*" + strings.Repeat(" ", 8<<10) + "*/"
	be.send(&pgproto3.Query{String: text})
	be.until(t, "long statement")
	var got audit.Event
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Detail["truncated"] == true {
			got = e
		}
	}
	sum := sha256.Sum256([]byte(text))
	if got.Detail["length"] != len(text) || got.Detail["sha256"] != hex.EncodeToString(sum[:]) || len(got.Query) > 4<<10 ||
		!strings.HasPrefix(got.Query, "select 1 /*") || !strings.HasSuffix(got.Query, "*/") {
		t.Fatalf("truncated event: %d bytes, detail %v", len(got.Query), got.Detail)
	}
}

// Ending a session ends its backend before the end is audited, and the
// client hears keygate's reason, not the backend's.
func TestKillEndsTheBackend(t *testing.T) {
	f := newRelay(t, "pw_kill")
	be := f.connect(t, "ivan", access.ReadWrite)
	be.send(&pgproto3.Query{String: `DO $$ BEGIN LOOP
		BEGIN INSERT INTO items (note) VALUES ('loop'); PERFORM pg_sleep(0.005); EXCEPTION WHEN query_canceled THEN NULL; END;
		COMMIT; END LOOP; END $$`})
	waitFor(t, func() bool { return f.upstream(t, "SELECT count(*) > 3 FROM items WHERE note = 'loop'") == "t" })
	sessions := f.srv.Gateway.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions", len(sessions))
	}
	f.srv.Gateway.End(sessions[0], "access revoked: a test")
	be.fatal("57P01", "keygate: access revoked: a test")
	ends := f.audit.OfType(audit.SessionEnd)
	if len(ends) != 1 || ends[0].Detail["upstream_end"] != gateway.BackendTerminated {
		t.Fatalf("session.end = %+v", ends)
	}
	gone, err := time.Parse(time.RFC3339Nano, ends[0].Detail["upstream_gone_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := f.upstream(t, fmt.Sprintf("SELECT count(*) FROM items WHERE at > '%s'", gone.Format(time.RFC3339Nano))); n != "0" {
		t.Errorf("%s rows committed after the backend was reported gone", n)
	}
}

// A client that vanishes between statements has its backend told to
// Terminate; one that vanishes mid-statement has it ended.
func TestClientThatVanishes(t *testing.T) {
	f := newRelay(t, "pw_vanish")
	for _, tc := range []struct {
		name, sql, how string
	}{
		{"idle", "", gateway.BackendClosed},
		{"busy", "SELECT pg_sleep(30)", gateway.BackendTerminated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.audit.OfType(audit.SessionEnd))
			c, done := f.serve(t)
			tok, _, _ := f.issuer.Mint(token.Claims{User: "jane", Database: "orders", Access: access.ReadOnly, Expires: time.Now().Add(time.Hour)})
			tc2 := f.startTLS(t, c)
			be := newBackend(t, tc2)
			be.send(startup(map[string]string{"user": "jane", "database": "orders"}))
			be.next()
			be.send(&pgproto3.PasswordMessage{Password: tok})
			be.until(t, "login")
			if tc.sql != "" {
				be.send(&pgproto3.Query{String: tc.sql})
				waitFor(t, func() bool {
					return f.upstream(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'jane.ro' AND wait_event = 'PgSleep'") == "1"
				})
			}
			c.Close()
			waitServe(t, done, 10*time.Second)
			ends := f.audit.OfType(audit.SessionEnd)
			if len(ends) != before+1 || ends[before].Detail["upstream_end"] != tc.how {
				t.Fatalf("session.end = %+v, want upstream_end %s", ends[before:], tc.how)
			}
			if n := f.upstream(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'jane.ro'"); n != "0" {
				t.Errorf("%s backends of jane.ro left", n)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeallocated(t *testing.T) {
	for text, want := range map[string]string{
		"DEALLOCATE report":                    "report",
		"deallocate prepare \"Mixed\"\"Case\"": `Mixed"Case`,
		"DEALLOCATE ALL":                       "*",
		"select 1; discard all":                "*",
		"DEALLOCATE Report; DEALLOCATE b":      "report,b",
		"SELECT 'no deallocation here'":        "",
	} {
		var got []string
		for _, n := range deallocated(text) {
			if n == "" {
				n = "*"
			}
			got = append(got, n)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("deallocated(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestDigest(t *testing.T) {
	text := strings.Repeat("é", 3000) + "MIDDLE" + strings.Repeat("🔑", 1500)
	got, detail := gateway.AuditForm(text, 1<<10)
	sum := sha256.Sum256([]byte(text))
	if len(got) > 1<<10 || detail["length"] != len(text) || detail["sha256"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("digest of %d bytes: %d bytes kept, detail %v", len(text), len(got), detail)
	}
	if !strings.HasPrefix(got, "éé") || !strings.HasSuffix(got, "🔑🔑") || strings.Contains(got, "MIDDLE") || !strings.Contains(got, "bytes omitted") {
		t.Errorf("digest = %q", got)
	}
	if short, d := gateway.AuditForm("SELECT 1", 1<<10); short != "SELECT 1" || d != nil {
		t.Errorf("a short statement was changed: %q %v", short, d)
	}
}

func TestDescribeFunctionCall(t *testing.T) {
	call := func(fc *pgproto3.FunctionCall) []byte {
		b, err := fc.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b[5:]
	}
	for _, tc := range []struct {
		fc   *pgproto3.FunctionCall
		want string
	}{
		{&pgproto3.FunctionCall{Function: 952, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0x40, 0x06}, {0, 2, 0, 0}}}, "lo_open(16390, 131072)"},
		{&pgproto3.FunctionCall{Function: 955, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 0}, make([]byte, 8192)}}, "lowrite(0, <8192 bytes>)"},
		{&pgproto3.FunctionCall{Function: 3170, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 1}, {0, 0, 0, 0, 0, 0, 1, 0}, {0, 0, 0, 0}}}, "lo_lseek64(1, 256, 0)"},
		{&pgproto3.FunctionCall{Function: 957, Arguments: [][]byte{[]byte("-1")}}, `lo_creat("-1")`},
		{&pgproto3.FunctionCall{Function: 953, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{nil}}, "lo_close(NULL)"},
	} {
		b := call(tc.fc)
		if got := largeObjects[tc.fc.Function].describe(b); got != tc.want {
			t.Errorf("describe = %q, want %q", got, tc.want)
		}
	}
}

// The client hears that a statement finished only once its audit event
// is stored: while the audit store holds back, the CommandComplete and
// ReadyForQuery wait, with the event already recorded.
func TestStatementEndWaitsForItsAudit(t *testing.T) {
	f := newRelay(t, "pw_stored")
	be := f.connect(t, "dina", access.ReadOnly)
	f.audit.Hold()
	be.send(&pgproto3.Query{String: "SELECT 7"})
	answered := make(chan reply, 1)
	go func() { answered <- be.until(t, "select while the audit store holds back") }()
	f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool { return e.Query == "SELECT 7" })
	select {
	case r := <-answered:
		t.Fatalf("the client heard the statement's end (%q) before its event was stored", r.types)
	case <-time.After(300 * time.Millisecond):
	}
	f.audit.Release()
	select {
	case r := <-answered:
		if len(r.tags) != 1 || r.tags[0] != "SELECT 1" || len(r.rows) != 1 || r.rows[0] != "7" {
			t.Fatalf("reply after the store took the event: %q %v %v", r.types, r.tags, r.rows)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the store took the event")
	}
}
