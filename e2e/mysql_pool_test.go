package e2e

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/api"
)

// mySession is one client connection through the MySQL gateway.
type mySession struct {
	db   *sql.DB
	conn *sql.Conn
}

// openMySQL opens one connection through the MySQL gateway with cfg and
// says how long the gateway took to let it in.
func openMySQL(cfg *mysql.Config) (*mySession, time.Duration, error) {
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, 0, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	start := time.Now()
	conn, err := db.Conn(context.Background())
	waited := time.Since(start)
	if err != nil {
		db.Close()
		return nil, waited, err
	}
	return &mySession{db: db, conn: conn}, waited, nil
}

// mySessionOf opens user's session on orders_my with tok, closed when the
// test ends; adjust, when given, changes the client's configuration.
func (s *kgServer) mySessionOf(t testing.TB, user, tok string, adjust func(*mysql.Config)) *mySession {
	t.Helper()
	cfg := s.mysqlConfig(t, user, "orders_my", tok)
	if adjust != nil {
		adjust(cfg)
	}
	ms, _, err := openMySQL(cfg)
	if err != nil {
		t.Fatalf("%s's session on orders_my: %v", user, err)
	}
	t.Cleanup(ms.close)
	return ms
}

// close quits the session: the driver sends COM_QUIT.
func (ms *mySession) close() {
	ms.conn.Close()
	ms.db.Close()
}

// one runs query and returns the first column of its first row, "NULL"
// for a NULL.
func (ms *mySession) one(t testing.TB, query string) string {
	t.Helper()
	var v sql.NullString
	if err := ms.conn.QueryRowContext(context.Background(), query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

func (ms *mySession) exec(t testing.TB, stmt string) {
	t.Helper()
	if _, err := ms.conn.ExecContext(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// upstreamThread reports whether MariaDB still lists connection thread.
func (s *kgServer) upstreamThread(t testing.TB, thread string) bool {
	t.Helper()
	return s.upstreamMySQL(t, "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = "+thread)[0][0] != "0"
}

// A person's upstream MariaDB connection serves her next session at the
// same level with the same handshake, reset with COM_RESET_CONNECTION and
// started again: no variable, setting, temporary table, prepared
// statement, lock, role or schema change of the first session reaches the
// second. It never serves another person, another level or another
// character set; a session that quits inside a transaction gives it up,
// and the person's revocation ends it upstream.
func TestMySQLPoolReusesResetsAndRevokes(t *testing.T) {
	s := startServerWith(t, "mypool", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "mia", "engineers")
	s.addUser(t, "moe", "engineers")
	tok := s.token(t, "mia", "orders_my", "--access", "rw")

	s1 := s.mySessionOf(t, "mia", tok, nil)
	thread := s1.one(t, "SELECT CONNECTION_ID()")
	fresh := map[string]string{}
	checks := []string{
		"SELECT CURRENT_ROLE()",
		"SELECT DATABASE()",
		"SELECT @@SESSION.sql_mode",
		"SELECT @@SESSION.wait_timeout",
		"SELECT @@SESSION.collation_connection",
		"SELECT @leak",
		"SELECT IS_USED_LOCK('leak') IS NOT NULL",
		"SELECT @@SESSION.in_transaction",
	}
	for _, q := range checks {
		fresh[q] = s1.one(t, q)
	}
	if fresh["SELECT CURRENT_ROLE()"] != "keygate_orders_my_rw" {
		t.Fatalf("a fresh session's role is %q", fresh["SELECT CURRENT_ROLE()"])
	}
	for _, stmt := range []string{
		"SET @leak = 42",
		"SET SESSION sql_mode = 'ANSI_QUOTES'",
		"SET SESSION wait_timeout = 77",
		"SET NAMES latin1",
		"CREATE TEMPORARY TABLE leak_tmp (x int)",
		"PREPARE leak_stmt FROM 'SELECT 1'",
		"DO GET_LOCK('leak', 0)",
		"USE information_schema",
		"SET ROLE NONE",
	} {
		s1.exec(t, stmt)
	}
	if got := s1.one(t, "SELECT IS_USED_LOCK('leak') = CONNECTION_ID()"); got != "1" {
		t.Fatalf("session 1 does not hold its lock: %s", got)
	}
	s1.close()
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "mia", "orders_my", "session.end", thread) != nil })
	if end := sessionEvent(t, s, "mia", "orders_my", "session.end", thread); end.Detail["upstream_end"] != "pooled" {
		t.Fatalf("first session's end: upstream_end %v, want pooled", end.Detail["upstream_end"])
	}
	if !s.upstreamThread(t, thread) {
		t.Fatal("the pooled connection is gone upstream")
	}

	s2 := s.mySessionOf(t, "mia", tok, nil)
	if got := s2.one(t, "SELECT CONNECTION_ID()"); got != thread {
		t.Fatalf("second session got thread %s, want the pooled %s", got, thread)
	}
	if start := sessionEvent(t, s, "mia", "orders_my", "session.start", thread); start == nil || start.Detail["upstream_reused"] != true {
		t.Fatalf("second session's start does not say its connection was reused: %+v", start)
	}
	for _, q := range checks {
		if got := s2.one(t, q); got != fresh[q] {
			t.Errorf("after reuse, %s = %q, want %q as in a fresh session", q, got, fresh[q])
		}
	}
	for stmt, code := range map[string]uint16{"EXECUTE leak_stmt": 1243, "DO (SELECT count(*) FROM leak_tmp)": 1146} {
		var myErr *mysql.MySQLError
		if _, err := s2.conn.ExecContext(context.Background(), stmt); !errors.As(err, &myErr) || myErr.Number != code {
			t.Errorf("%s after reuse: %v, want error %d: session 1's statement or temporary table survived", stmt, err, code)
		}
	}
	if got := s2.one(t, "SELECT name FROM items WHERE id = 1"); got != "widget" {
		t.Errorf("reading through the reused connection: %q", got)
	}
	s2.close()
	waitFor(t, 5*time.Second, func() bool {
		end := sessionEvent(t, s, "mia", "orders_my", "session.end", thread)
		return end != nil && end.Detail["upstream_end"] == "pooled" && sessionEvent(t, s, "mia", "orders_my", "session.start", thread) != nil
	})
	time.Sleep(200 * time.Millisecond)

	// Once pooled, the connection serves none of these.
	for _, other := range []struct {
		user, access string
		adjust       func(*mysql.Config)
	}{
		{"moe", "rw", nil},
		{"mia", "ro", nil},
		{"mia", "rw", func(c *mysql.Config) { c.Collation = "latin1_swedish_ci" }},
	} {
		o := s.mySessionOf(t, other.user, s.token(t, other.user, "orders_my", "--access", other.access), other.adjust)
		if got := o.one(t, "SELECT CONNECTION_ID()"); got == thread {
			t.Errorf("%s at %s was handed mia's pooled rw connection", other.user, other.access)
		}
		o.close()
	}

	// A session that quits inside a transaction does not pool its
	// connection.
	s3 := s.mySessionOf(t, "mia", tok, nil)
	if got := s3.one(t, "SELECT CONNECTION_ID()"); got != thread {
		t.Fatalf("third session got thread %s, want the pooled %s", got, thread)
	}
	s3.exec(t, "BEGIN")
	s3.exec(t, "SELECT * FROM items FOR UPDATE")
	s3.close()
	if !holdsWithin(3*time.Second, func() bool { return !s.upstreamThread(t, thread) }) {
		t.Fatal("the connection of a session that quit inside a transaction is still there upstream")
	}
	if end := sessionEvent(t, s, "mia", "orders_my", "session.end", thread); end == nil || end.Detail["upstream_end"] == "pooled" {
		t.Fatalf("session.end of the session that quit inside a transaction: %+v", end)
	}
	s4 := s.mySessionOf(t, "mia", tok, nil)
	thread4 := s4.one(t, "SELECT CONNECTION_ID()")
	if thread4 == thread {
		t.Fatal("a connection whose session quit inside a transaction was reused")
	}
	s4.close()
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "mia", "orders_my", "session.end", thread4) != nil })

	// Revocation ends the pooled connection upstream.
	if !s.upstreamThread(t, thread4) {
		t.Fatalf("mia's pooled connection %s is not there before her revocation", thread4)
	}
	disabled := time.Now()
	s.kg(t, 0, "admin", "user", "disable", "mia")
	if !holdsWithin(3*time.Second, func() bool { return !s.upstreamThread(t, thread4) }) {
		t.Fatal("mia's pooled connection outlived her revocation by 3s")
	}
	t.Logf("pooled connection gone %s after keygate admin user disable", time.Since(disabled).Round(time.Millisecond))
}

// A client that goes away between commands, without COM_QUIT, leaves its
// connection to the pool; one that keygate ends does not.
func TestMySQLPoolClientVanishesAndKill(t *testing.T) {
	s := startServerWith(t, "mypoolgone", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "nia", "analysts")
	tok := s.token(t, "nia", "orders_my")

	cfg := s.mysqlConfig(t, "nia", "orders_my", tok)
	// The client's socket, to close under the driver.
	socket := make(chan net.Conn, 1)
	cfg.Net = "mypoolgone-" + itoa(os.Getpid())
	mysql.RegisterDialContext(cfg.Net, func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			socket <- c
		}
		return c, err
	})
	ms, _, err := openMySQL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	thread := ms.one(t, "SELECT CONNECTION_ID()")
	(<-socket).Close() // no COM_QUIT
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "nia", "orders_my", "session.end", thread) != nil })
	if end := sessionEvent(t, s, "nia", "orders_my", "session.end", thread); end.Detail["upstream_end"] != "pooled" {
		t.Fatalf("a client gone between commands: upstream_end %v, want pooled", end.Detail["upstream_end"])
	}
	ms.db.Close()

	// KILL CONNECTION of its own session is keygate ending it: no pooling.
	s2 := s.mySessionOf(t, "nia", tok, nil)
	if got := s2.one(t, "SELECT CONNECTION_ID()"); got != thread {
		t.Fatalf("second session got thread %s, want the pooled %s", got, thread)
	}
	s2.conn.ExecContext(context.Background(), "KILL CONNECTION "+thread)
	if !holdsWithin(3*time.Second, func() bool { return !s.upstreamThread(t, thread) }) {
		t.Fatal("the connection of a session ended with KILL CONNECTION is still there upstream")
	}
	if end := sessionEvent(t, s, "nia", "orders_my", "session.end", thread); end == nil || end.Detail["upstream_end"] != "terminated" {
		t.Fatalf("session.end after KILL CONNECTION: %+v", end)
	}
}

// max_connections is a budget of upstream connections for everyone: a
// session past it waits in line for queue_timeout, gets in when a
// connection frees up (or the slot of an idle pooled one), and is refused
// with a MySQL error naming the budget when none does;
// max_connections_per_person bounds one person while others still get in.
func TestMySQLConnectionBudget(t *testing.T) {
	s := startServerWith(t, "mybudget", serverOptions{mysql: true, stopWithTest: true,
		mysqlConfig: "    max_connections: 2\n    max_connections_per_person: 1\n    queue_timeout: 1500ms\n"})

	users := []string{"bo", "bea", "bill"}
	tok := map[string]string{}
	for _, u := range users {
		s.addUser(t, u, "analysts")
		tok[u] = s.token(t, u, "orders_my")
	}
	connect := func(user string) (*mySession, time.Duration, error) {
		return openMySQL(s.mysqlConfig(t, user, "orders_my", tok[user]))
	}
	refusal := func(err error, want string) bool {
		var myErr *mysql.MySQLError
		return errors.As(err, &myErr) && myErr.Number == 1040 && strings.Contains(myErr.Message, want)
	}
	bo, _, err := connect("bo")
	if err != nil {
		t.Fatal(err)
	}
	defer bo.close()

	// Per person: bo's second session waits out the queue and is refused.
	_, waited, err := connect("bo")
	if !refusal(err, "max_connections_per_person allows") || waited < time.Second {
		t.Fatalf("bo's second session: %v after %s; want a refusal naming max_connections_per_person after the 1.5s queue", err, waited)
	}

	bea, _, err := connect("bea")
	if err != nil {
		t.Fatalf("bea, within both budgets: %v", err)
	}
	// The whole budget is spent: bill waits, and gets in once bea leaves.
	type result struct {
		ms     *mySession
		waited time.Duration
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ms, w, err := connect("bill")
		done <- result{ms, w, err}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("bill got in past a spent budget: %v", r.err)
	default:
	}
	bea.exec(t, "BEGIN")
	bea.close() // quits inside a transaction: its connection goes, freeing the slot
	r := <-done
	if r.err != nil {
		t.Fatalf("bill, after bea left: %v", r.err)
	}
	if r.waited < 250*time.Millisecond {
		t.Errorf("bill waited %s, want the time until bea left", r.waited)
	}
	t.Logf("bill waited %s in line", r.waited.Round(time.Millisecond))

	// Spent, and nobody leaves: refused after queue_timeout, in words.
	_, waited, err = connect("bea")
	if !refusal(err, "all 2 connections that max_connections allows are in use") || waited < time.Second {
		t.Fatalf("bea past a spent budget: %v after %s; want a refusal naming max_connections", err, waited)
	}
	refused := s.audit(t, "--type", "connect.refused", "--db", "orders_my")
	if _, ok := findEvent(refused, func(e api.AuditEvent) bool { return strings.Contains(e.Reason, "max_connections allows") }); !ok {
		t.Errorf("no connect.refused naming the budget: %+v", refused)
	}

	// bill's session ends idle and its connection is pooled: that idle
	// connection's slot goes to bea at once.
	billThread := r.ms.one(t, "SELECT CONNECTION_ID()")
	r.ms.close()
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "bill", "orders_my", "session.end", billThread) != nil })
	c, waited, err := connect("bea")
	if err != nil {
		t.Fatalf("bea with an idle pooled connection of bill's to take the place of: %v", err)
	}
	defer c.close()
	if waited > time.Second {
		t.Errorf("bea waited %s although an idle connection could be evicted", waited)
	}
	if !holdsWithin(3*time.Second, func() bool { return !s.upstreamThread(t, billThread) }) {
		t.Error("bill's evicted pooled connection is still there upstream")
	}
}
