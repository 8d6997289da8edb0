package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/api"
)

// The gateway relays the whole protocol: these run real pgx sessions
// through it and check what comes back.

func TestRelayExtendedProtocolAndErrors(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "rex", "engineers")
	cfg, err := pgx.ParseConfig(s.connString("rex", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = s.token(t, "rex", "orders", "--access", "rw")
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// Prepared statements with parameters (Parse/Bind/Execute), reused.
	for i := 1; i <= 3; i++ {
		var name string
		var n int
		if err := conn.QueryRow(ctx, "SELECT name, $1::int * 2 FROM customers WHERE id = $2 /* relay-extended */", i, 1).Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		if name != "Ada" || n != i*2 {
			t.Fatalf("got %q %d", name, n)
		}
	}
	// An error leaves the session usable.
	_, err = conn.Exec(ctx, "SELECT * FROM no_such_table")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Fatalf("error = %v, want undefined_table", err)
	}
	// A transaction with a write, rolled back.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO customers (name) VALUES ($1)", "Rolled Back"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	var count int
	conn.QueryRow(ctx, "SELECT count(*) FROM customers WHERE name = 'Rolled Back'").Scan(&count)
	if count != 0 {
		t.Fatal("rolled-back row is visible")
	}
	// Batches (pipelined messages) come back in order.
	batch := &pgx.Batch{}
	for i := range 50 {
		batch.Queue("SELECT $1::int", i)
	}
	br := conn.SendBatch(ctx, batch)
	for i := range 50 {
		var v int
		if err := br.QueryRow().Scan(&v); err != nil || v != i {
			t.Fatalf("batch item %d = %d, %v", i, v, err)
		}
	}
	br.Close()

	// pgx prepares the statement once (a named Parse) and executes it three
	// times (Bind): the audit shows the Parse and each execution.
	var events int
	for _, e := range s.audit(t, "--user", "rex", "--type", "query") {
		if strings.Contains(e.Query, "relay-extended") {
			events++
		}
	}
	if events != 4 {
		t.Fatalf("the prepared statement was audited %d times, want 4 (its Parse and three executions)", events)
	}
}

func TestRelayCopyInAndOut(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "cora", "engineers")
	c := s.pgx(t, "cora", "orders", s.token(t, "cora", "orders", "--access", "rw"))
	ctx := context.Background()
	var in bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&in, "1\t%d.%02d\n", i, i%100)
	}
	tag, err := c.CopyFrom(ctx, &in, "COPY orders (customer_id, amount) FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 5000 {
		t.Fatalf("COPY FROM copied %d rows", tag.RowsAffected())
	}
	var out bytes.Buffer
	tag, err = c.CopyTo(ctx, &out, "COPY (SELECT amount FROM orders WHERE customer_id = 1 ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() < 5000 || bytes.Count(out.Bytes(), []byte("\n")) != int(tag.RowsAffected()) {
		t.Fatalf("COPY TO returned %d rows, %d lines", tag.RowsAffected(), bytes.Count(out.Bytes(), []byte("\n")))
	}
}

func TestRelayNoticesAndNotifications(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "nia", "analysts")
	ctx := context.Background()
	var notices []string
	cfg, err := pgconn.ParseConfig(s.connString("nia", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = s.token(t, "nia", "orders")
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	var notifications []string
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		notifications = append(notifications, n.Channel+":"+n.Payload)
	}
	listener, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `DO $$ BEGIN RAISE NOTICE 'hello from upstream'; END $$`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || notices[0] != "hello from upstream" {
		t.Fatalf("notices = %q", notices)
	}
	if _, err := listener.Exec(ctx, "LISTEN keygate_test").ReadAll(); err != nil {
		t.Fatal(err)
	}
	notifier := s.pgx(t, "nia", "orders", s.token(t, "nia", "orders"))
	if _, err := notifier.Exec(ctx, "NOTIFY keygate_test, 'payload-123'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := listener.WaitForNotification(wctx); err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if len(notifications) != 1 || notifications[0] != "keygate_test:payload-123" {
		t.Fatalf("notifications = %q", notifications)
	}
}

func TestRelayLargeStatementsAndResults(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "lara", "analysts")
	c := s.pgx(t, "lara", "orders", s.token(t, "lara", "orders"))
	ctx := context.Background()
	// A statement longer than what the audit keeps still runs whole.
	long := "SELECT length('" + strings.Repeat("x", 200_000) + "') /* large-statement */"
	res := c.ExecParams(ctx, long, nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != "200000" {
		t.Fatalf("long statement: %v %v", res.Err, res.Rows)
	}
	// A result of several megabytes comes back intact.
	res = c.ExecParams(ctx, "SELECT repeat('y', 1000) FROM generate_series(1, 8000)", nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 8000 || len(res.Rows[7999][0]) != 1000 {
		t.Fatalf("large result: %v, %d rows", res.Err, len(res.Rows))
	}
	events := s.audit(t, "--user", "lara", "--type", "query")
	e, ok := findEvent(events, func(e api.AuditEvent) bool { return strings.HasPrefix(e.Query, "SELECT length('xxx") })
	if !ok {
		t.Fatal("long statement not audited")
	}
	// Statements up to audit.max_statement_size (1 MiB) are kept whole.
	if e.Query != long {
		t.Fatalf("long statement audited as %d bytes, sent %d", len(e.Query), len(long))
	}
}

// PostgreSQL 17 clients can skip SSLRequest and start TLS directly
// (sslnegotiation=direct, ALPN "postgresql").
func TestDirectTLS(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "dina", "analysts")
	c := s.pgx(t, "dina", "orders", s.token(t, "dina", "orders"), "sslnegotiation=direct")
	res := c.ExecParams(context.Background(), "SELECT session_user", nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != "dina.ro" {
		t.Fatalf("direct TLS session: %v %v", res.Err, res.Rows)
	}
}

// Re-preparing a name that is held fails, as in PostgreSQL; the decoy
// never reaches the upstream, and the audit names what the execution ran.
func TestAuditNamesWhatAPreparedStatementRuns(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "mona", "engineers")
	c := s.pgx(t, "mona", "orders", s.token(t, "mona", "orders", "--access", "rw"))
	ctx := context.Background()
	if _, err := c.Prepare(ctx, "s1", "DELETE FROM orders WHERE amount = 12345.67 /* real-statement */", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(ctx, "s1", "SELECT 1 /* decoy */", nil); err == nil {
		t.Fatal("re-preparing s1 succeeded")
	}
	if res := c.ExecPrepared(ctx, "s1", nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	var executions []string
	for _, e := range s.audit(t, "--user", "mona", "--type", "query") {
		executions = append(executions, e.Query)
	}
	// The Parse, then the execution of what keygate holds.
	if len(executions) != 2 || !strings.Contains(executions[0], "real-statement") || !strings.Contains(executions[1], "real-statement") {
		t.Fatalf("audited %q", executions)
	}
}
