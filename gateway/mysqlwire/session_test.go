package mysqlwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/token"
)

// rawClient is a minimal client for what drivers do not send: a
// handshake without TLS, COM_CHANGE_USER.
type rawClient struct {
	conn net.Conn
	r    *mysqlproto.Reader
}

// dialRaw connects and authenticates with mysql_clear_password over TLS
// when useTLS is set; it returns the client and the server's last packet.
func (f *fixture) dialRaw(t *testing.T, user, db, tok string, useTLS bool) (*rawClient, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{conn: conn, r: mysqlproto.NewReader(bufio.NewReader(conn))}
	_, _, p, err := c.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	g, err := mysqlproto.DecodeGreeting(p)
	if err != nil {
		t.Fatal(err)
	}
	if g.Caps&gomysql.CLIENT_SSL == 0 || g.AuthName != mysqlproto.CachingSHA2 {
		t.Fatalf("greeting offers caps %#x, method %s", g.Caps, g.AuthName)
	}
	// The upstream's own version, prefix and all: clients pick their
	// dialect from it.
	if up, err := f.up.Greeting(context.Background()); err != nil || g.Version != up.Version || !strings.HasPrefix(g.Version, "5.5.5-10.") {
		t.Fatalf("greeting shows version %q; the upstream's is %q (%v)", g.Version, up.Version, err)
	}
	caps := gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_CONNECT_WITH_DB |
		gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | gomysql.CLIENT_TRANSACTIONS
	seq := byte(1)
	if useTLS {
		caps |= gomysql.CLIENT_SSL
		if _, err := mysqlproto.Write(conn, seq, (&mysqlproto.Response{Caps: caps, Charset: 45, SSLRequest: true}).Encode()); err != nil {
			t.Fatal(err)
		}
		seq++
		tc := tls.Client(conn, &tls.Config{RootCAs: f.pool, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.conn, c.r = tc, mysqlproto.NewReader(bufio.NewReader(tc))
	}
	resp := &mysqlproto.Response{Caps: caps, Charset: 45, User: user, Database: db, Auth: append([]byte(tok), 0), AuthName: mysqlproto.ClearPassword}
	if _, err := mysqlproto.Write(c.conn, seq, resp.Encode()); err != nil {
		t.Fatal(err)
	}
	_, _, p, err = c.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// command sends a command and returns the first packet of the answer.
func (c *rawClient) command(t *testing.T, p []byte) []byte {
	t.Helper()
	if _, err := mysqlproto.Write(c.conn, 0, p); err != nil {
		t.Fatal(err)
	}
	_, _, answer, err := c.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	return answer
}

func errMessage(t *testing.T, p []byte) string {
	t.Helper()
	e, err := mysqlproto.DecodeErr(p, gomysql.CLIENT_PROTOCOL_41)
	if err != nil {
		t.Fatalf("want an ERR packet, got %q", p)
	}
	return e.Message
}

func TestRefusalsAreAudited(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY)")
	good := f.token(t, "alice", access.ReadOnly)
	past := &token.Issuer{Keys: f.issuer.Keys, Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	expired, _, err := past.Mint(token.Claims{User: "alice", Database: "orders_my", Access: access.ReadOnly, Expires: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	f.authz.deny("mallory", "the person is disabled")
	cases := []struct {
		name, user, db, tok string
		tls                 bool
		want                string
	}{
		{"no TLS", "alice", "orders_my", good, false, "TLS is required"},
		{"tampered", "alice", "orders_my", good[:len(good)-2] + "xx", true, "token is"},
		{"expired", "alice", "orders_my", expired, true, "expired"},
		{"wrong user", "bob", "orders_my", good, true, "issued to alice, not bob"},
		{"wrong database", "alice", f.schema, good, true, "is for database orders_my"},
		{"disabled", "mallory", "orders_my", f.token(t, "mallory", access.ReadOnly), true, "the person is disabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, p := f.dialRaw(t, c.user, c.db, c.tok, c.tls)
			if msg := errMessage(t, p); !strings.Contains(msg, c.want) {
				t.Fatalf("refusal says %q, want %q", msg, c.want)
			}
			f.audit.WaitFor(t, audit.ConnectRefused, func(e audit.Event) bool { return strings.Contains(e.Reason, c.want) })
		})
	}
	t.Run("COM_CHANGE_USER", func(t *testing.T) {
		c, p := f.dialRaw(t, "alice", "orders_my", f.token(t, "alice", access.ReadOnly), true)
		if p[0] != mysqlproto.HeaderOK {
			t.Fatalf("login: %q", p)
		}
		answer := c.command(t, append([]byte{gomysql.COM_CHANGE_USER}, "root\x00\x00"...))
		if msg := errMessage(t, answer); !strings.Contains(msg, "COM_CHANGE_USER is refused") {
			t.Fatalf("COM_CHANGE_USER answered %q", msg)
		}
		f.audit.WaitFor(t, audit.QueryRefused, func(e audit.Event) bool { return strings.Contains(e.Reason, "COM_CHANGE_USER") })
	})
}

func TestRevocationEndsSessionAndUpstream(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY)")
	db := f.open(t, f.config("carol", f.token(t, "carol", access.ReadOnly)))
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var thread uint32
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&thread); err != nil {
		t.Fatal(err)
	}
	running := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(context.Background(), "SELECT SLEEP(30)")
		running <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	f.authz.deny("carol", "removed from the group")
	for _, s := range f.gw.Sessions() {
		f.gw.End(s, "access revoked: removed from the group")
	}
	select {
	case err := <-running:
		if err == nil {
			t.Fatal("the statement finished after revocation")
		}
	case <-time.After(time.Second):
		t.Fatal("the session was still running 1 s after revocation")
	}
	clientGone := time.Since(start)
	admin := f.maria.Connect(t, "")
	for {
		var n int
		if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", thread).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("upstream connection %d still there 1 s after revocation", thread)
		}
		time.Sleep(10 * time.Millisecond)
	}
	upstreamGone := time.Since(start)
	fmt.Printf("revocation: client told in %s, upstream connection gone in %s\n", clientGone.Round(time.Millisecond), upstreamGone.Round(time.Millisecond))
	end := f.audit.WaitFor(t, audit.SessionEnd, func(e audit.Event) bool { return e.User == "carol" })
	if end.Detail["upstream_end"] != "terminated" || !strings.Contains(end.Reason, "revoked") {
		t.Fatalf("session.end = %+v", end)
	}
}

func TestProtocolRoundTrips(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, body LONGBLOB); INSERT INTO items (id, name) VALUES (1, 'one'), (2, 'two')")
	c := f.config("dave", f.token(t, "dave", access.ReadWrite))
	c.MultiStatements = true
	c.MaxAllowedPacket = 64 << 20
	db := f.open(t, c)
	ctx := context.Background()

	t.Run("binary parameters", func(t *testing.T) {
		var name string
		when := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
		if err := db.QueryRow("SELECT name FROM items WHERE id = ? AND ? > '2000-01-01' AND ? < 10.5 AND ? IS NULL", int64(2), when, 3.25, nil).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if name != "two" {
			t.Fatalf("name = %q", name)
		}
	})
	t.Run("multiple result sets", func(t *testing.T) {
		rows, err := db.Query("SELECT 1; SELECT 'a', 'b'; UPDATE items SET name = name WHERE id = 1")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		sets := 0
		for {
			for rows.Next() {
			}
			sets++
			if !rows.NextResultSet() {
				break
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if sets < 2 {
			t.Fatalf("%d result sets", sets)
		}
		e := f.audit.WaitFor(t, audit.Query, hasQuery("SELECT 1; SELECT 'a', 'b'; UPDATE items SET name = name WHERE id = 1"))
		if got := strings.Join(outcomes(e), "|"); got != "1 rows|1 rows|OK, 0 rows affected" {
			t.Fatalf("outcomes = %s", got)
		}
	})
	t.Run("20 MiB value", func(t *testing.T) {
		big := []byte(strings.Repeat("0123456789abcdef", 20<<20/16))
		if _, err := db.Exec("UPDATE items SET body = ? WHERE id = 1", big); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := db.QueryRow("SELECT body FROM items WHERE id = 1").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(big) || string(got[:64]) != string(big[:64]) {
			t.Fatalf("got %d bytes back, sent %d", len(got), len(big))
		}
		e := f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool {
			return e.Query == "UPDATE items SET body = ? WHERE id = 1" && e.Detail["protocol"] == "execute"
		})
		if p := fmt.Sprint(e.Detail["params"]); len(p) > 1024 || !strings.Contains(p, "bytes in all") {
			t.Fatalf("params in the audit: %d bytes: %.200s", len(p), p)
		}
	})
	t.Run("context cancel ends the upstream query", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var thread uint32
		if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&thread); err != nil {
			t.Fatal(err)
		}
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err = conn.ExecContext(qctx, "SELECT SLEEP(30)")
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, driver.ErrInvalidConn) {
			t.Logf("cancelled statement: %v", err)
		}
		conn.Close()
		waitGone(t, f.maria.Connect(t, ""), thread, 2*time.Second)
	})
	t.Run("KILL QUERY from a second connection", func(t *testing.T) {
		killer := f.open(t, f.config("dave", f.token(t, "dave", access.ReadWrite)))
		stranger := f.open(t, f.config("erin", f.token(t, "erin", access.ReadOnly)))
		c1, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		var id uint32
		done := make(chan error, 1)
		go func() {
			var v int
			done <- c1.QueryRowContext(ctx, "SELECT SLEEP(20)").Scan(&v)
		}()
		time.Sleep(200 * time.Millisecond)
		for _, s := range f.gw.Sessions() {
			if s.User == "dave" && s.BytesFromClient.Load() > 0 {
				id = s.CancelID
			}
		}
		if id == 0 {
			t.Fatal("no session of dave")
		}
		if _, err := stranger.Exec(fmt.Sprintf("KILL QUERY %d", id)); err == nil || !strings.Contains(err.Error(), "Unknown thread id") {
			t.Fatalf("another person's KILL QUERY: %v", err)
		}
		start := time.Now()
		if _, err := killer.Exec(fmt.Sprintf("KILL QUERY %d", id)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Logf("cancelled in %s: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(3 * time.Second):
			t.Fatal("KILL QUERY did not end the query")
		}
		f.audit.WaitFor(t, audit.QueryCancel, func(e audit.Event) bool { return e.User == "dave" })
	})
}

func waitGone(t *testing.T, admin *sql.DB, thread uint32, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var n int
		if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", thread).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream connection %d still there after %s", thread, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read reads the next packet of an answer.
func (c *rawClient) read(t *testing.T) []byte {
	t.Helper()
	_, _, p, err := c.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCursorFetch(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY); INSERT INTO items VALUES (1), (2), (3)")
	c, p := f.dialRaw(t, "hana", "orders_my", f.token(t, "hana", access.ReadOnly), true)
	if p[0] != mysqlproto.HeaderOK {
		t.Fatalf("login: %q", p)
	}
	p = c.command(t, append([]byte{gomysql.COM_STMT_PREPARE}, "SELECT id FROM items WHERE id > ? ORDER BY id"...))
	ok, err := mysqlproto.DecodePrepareOK(p)
	if err != nil {
		t.Fatalf("prepare: %q", p)
	}
	for range 4 { // a parameter, its EOF, a column, its EOF
		c.read(t)
	}
	// Execute with a read-only cursor and one LONGLONG parameter, 0.
	exec := []byte{gomysql.COM_STMT_EXECUTE, byte(ok.StatementID), byte(ok.StatementID >> 8), 0, 0, 1, 1, 0, 0, 0,
		0, 1, gomysql.MYSQL_TYPE_LONGLONG, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	c.command(t, exec) // the column count
	c.read(t)          // the column
	if eof := c.read(t); mysqlproto.EOFStatus(eof)&mysqlproto.StatusCursorExists == 0 {
		t.Fatalf("no cursor opened: %q", eof)
	}
	fetch := []byte{gomysql.COM_STMT_FETCH, byte(ok.StatementID), byte(ok.StatementID >> 8), 0, 0, 2, 0, 0, 0}
	rows := 0
	for p := c.command(t, fetch); !mysqlproto.IsEOF(p, false); p = c.read(t) {
		rows++
	}
	if rows != 2 {
		t.Fatalf("first fetch: %d rows, want 2", rows)
	}
	rows = 0
	for p := c.command(t, fetch); !mysqlproto.IsEOF(p, false); p = c.read(t) {
		rows++
	}
	if rows != 1 {
		t.Fatalf("second fetch: %d rows, want 1", rows)
	}
	e := f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool { return e.Detail["protocol"] == "execute" && e.User == "hana" })
	if e.Query != "SELECT id FROM items WHERE id > ? ORDER BY id" || fmt.Sprint(e.Detail["params"]) != "[0]" || strings.Join(outcomes(e), "") != "cursor opened" {
		t.Fatalf("execute event: %+v", e)
	}
}

// The client hears that a statement finished only once its audit event
// is stored: while the audit store holds back, the end of the answer
// waits, with the event already recorded; the same for an error and a
// prepare.
func TestStatementEndWaitsForItsAudit(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
	db := f.open(t, f.config("erin", f.token(t, "erin", access.ReadWrite)))
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"INSERT INTO items VALUES (1, 'one')", "SELECT name FROM items", "SELECT * FROM no_such_table", "prepare SELECT name FROM items WHERE id = ?"} {
		f.audit.Hold()
		answered := make(chan error, 1)
		go func() {
			if text, ok := strings.CutPrefix(q, "prepare "); ok {
				st, err := db.Prepare(text)
				if err == nil {
					st.Close()
				}
				answered <- err
				return
			}
			rows, err := db.Query(q)
			if err == nil {
				for rows.Next() {
				}
				err = rows.Close()
			}
			answered <- err
		}()
		f.audit.WaitFor(t, audit.Query, hasQuery(strings.TrimPrefix(q, "prepare ")))
		select {
		case err := <-answered:
			t.Fatalf("%s: the client heard the end (%v) before its event was stored", q, err)
		case <-time.After(300 * time.Millisecond):
		}
		f.audit.Release()
		select {
		case err := <-answered:
			if (err != nil) != strings.Contains(q, "no_such_table") {
				t.Fatalf("%s: %v", q, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no answer after the store took the event", q)
		}
	}
}
