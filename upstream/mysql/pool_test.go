package mysql

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream"
	"github.com/keygate/keygate/upstream/pool"
)

// pooled adjusts a test database's config to keep connections.
func pooled(c *upstream.Config) { c.Pool = true }

// clientLogin is what a client that asks for every relayed capability the
// server has, and utf8mb4_unicode_ci, asks for.
func clientLogin(t *testing.T, u *Upstream) Login {
	t.Helper()
	s, err := u.Greeting(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return Login{Caps: s.Caps & Relayed, Charset: 224}
}

// queryOne runs a query on c and returns the first column of its first
// row as text, "NULL" for a NULL.
func queryOne(t *testing.T, c *Conn, q string) string {
	t.Helper()
	if _, err := mysqlproto.Write(c.Conn, 0, query(q)); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		_, _, p, err := c.R.Read()
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return p
	}
	p := read()
	if p[0] == mysqlproto.HeaderErr {
		e, _ := mysqlproto.DecodeErr(p, c.Caps)
		t.Fatalf("%s: %v", q, e)
	}
	n, err := mysqlproto.ColumnCount(p)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	for range n {
		read()
	}
	deprecateEOF := c.Caps&gomysql.CLIENT_DEPRECATE_EOF != 0
	if !deprecateEOF {
		read()
	}
	out := ""
	for rows := 0; ; rows++ {
		p := read()
		if mysqlproto.IsEOF(p, deprecateEOF) {
			return out
		}
		if rows > 0 {
			continue
		}
		if p[0] == 0xfb {
			out = "NULL"
			continue
		}
		l, used, ok := mysqlproto.LenInt(p)
		if !ok {
			t.Fatalf("%s: a malformed row", q)
		}
		out = string(p[used : used+int(l)])
	}
}

// command sends a command other than a query and checks it was answered
// with OK (or EOF).
func command(t *testing.T, c *Conn, cmd []byte) {
	t.Helper()
	if _, err := mysqlproto.Write(c.Conn, 0, cmd); err != nil {
		t.Fatal(err)
	}
	_, _, p, err := c.R.Read()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := EndStatus(p, c.Caps); !ok {
		t.Fatalf("command %#x answered with %x", cmd[0], p)
	}
}

func acquire(t *testing.T, u *Upstream, person string, level access.Level, l Login) *Conn {
	t.Helper()
	c, err := u.Acquire(context.Background(), person, level, l)
	if err != nil {
		t.Fatalf("acquire %s at %s: %v", person, level, err)
	}
	t.Cleanup(func() { u.Release(c, false) })
	return c
}

// threadListed reports whether the server lists connection id.
func threadListed(t *testing.T, m *testenv.MariaDB, id uint32) bool {
	t.Helper()
	rows, err := m.Query(context.Background(), "", "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id)
	if err != nil {
		t.Fatal(err)
	}
	return rows[0][0] != "0"
}

func waitGone(t *testing.T, m *testenv.MariaDB, id uint32, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for threadListed(t, m, id) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A released connection is reset and serves its owner's next session as a
// fresh login would: role and schema as the session start sets them,
// settings the handshake's capabilities imply (IGNORE_SPACE, the
// interactive timeout, multi-statements) put back, and nothing of the
// previous session left. The reset does not unlock the person's user.
func TestPoolReusesAndResets(t *testing.T) {
	m, u := newDatabase(t, pooled)
	// An interactive client's session starts with wait_timeout taken
	// from interactive_timeout: make them differ, for new connections.
	was, err := m.Query(context.Background(), "", "SELECT @@GLOBAL.interactive_timeout")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), "", "SET GLOBAL interactive_timeout = 4321"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Exec(context.Background(), "", "SET GLOBAL interactive_timeout = "+was[0][0]) })
	l := clientLogin(t, u)
	l.Caps |= gomysql.CLIENT_IGNORE_SPACE | gomysql.CLIENT_INTERACTIVE | gomysql.CLIENT_MULTI_STATEMENTS
	c := acquire(t, u, "pam", access.ReadWrite, l)
	if c.Reused {
		t.Fatal("a new login says it was reused")
	}
	checks := []string{
		"SELECT CURRENT_ROLE()",
		"SELECT DATABASE()",
		"SELECT @@SESSION.sql_mode",
		"SELECT @@SESSION.wait_timeout",
		"SELECT @@SESSION.collation_connection",
		"SELECT @leak",
		"SELECT IS_USED_LOCK('leak')",
	}
	fresh := map[string]string{}
	for _, q := range checks {
		fresh[q] = queryOne(t, c, q)
	}
	if fresh["SELECT CURRENT_ROLE()"] != u.RoleName(access.ReadWrite) || !strings.Contains(fresh["SELECT @@SESSION.sql_mode"], "IGNORE_SPACE") ||
		fresh["SELECT @@SESSION.wait_timeout"] != "4321" {
		t.Fatalf("a fresh session: %v", fresh)
	}
	for _, stmt := range []string{"SET @leak = 1", "SET SESSION sql_mode = 'ANSI_QUOTES', SESSION wait_timeout = 77", "SET NAMES latin1",
		"CREATE TEMPORARY TABLE leak_tmp (x int)", "DO GET_LOCK('leak', 0)", "USE information_schema", "SET ROLE NONE"} {
		if err := c.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	command(t, c, []byte{gomysql.COM_SET_OPTION, gomysql.MYSQL_OPTION_MULTI_STATEMENTS_OFF, 0})
	if !u.Release(c, true) {
		t.Fatal("Release did not keep the connection")
	}
	if !locked(t, m, UserName("pam", access.ReadWrite)) {
		t.Fatal("pam's user is unlocked while her connection is pooled")
	}

	c2 := acquire(t, u, "pam", access.ReadWrite, l)
	if c2.ThreadID != c.ThreadID || !c2.Reused {
		t.Fatalf("second lease: thread %d reused %v, want the pooled %d", c2.ThreadID, c2.Reused, c.ThreadID)
	}
	for _, q := range checks {
		if got := queryOne(t, c2, q); got != fresh[q] {
			t.Errorf("after reuse, %s = %q, want %q as in a fresh session", q, got, fresh[q])
		}
	}
	var e *mysqlproto.Err
	if err := c2.Exec("DO (SELECT count(*) FROM leak_tmp)"); !errors.As(err, &e) || e.Code != 1146 {
		t.Errorf("the last session's temporary table: %v, want error 1146 (no such table)", err)
	}
	if err := c2.Exec("DO 1; DO 2"); err != nil {
		t.Errorf("multi-statements, off in the last session, are not back: %v", err)
	}
	if st := u.PoolStats(); st.Reused != 1 || st.Dialed != 1 || st.Open != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// Only the same person, level and handshake get a pooled connection.
func TestPoolKeysOwners(t *testing.T) {
	_, u := newDatabase(t, pooled)
	l := clientLogin(t, u)
	c := acquire(t, u, "pia", access.ReadOnly, l)
	if !u.Release(c, true) {
		t.Fatal("Release did not keep the connection")
	}
	latin1 := l
	latin1.Charset = 8
	noMulti := l
	noMulti.Caps &^= gomysql.CLIENT_MULTI_STATEMENTS
	for _, o := range []struct {
		person string
		level  access.Level
		l      Login
	}{{"pete", access.ReadOnly, l}, {"pia", access.ReadWrite, l}, {"pia", access.ReadOnly, latin1}, {"pia", access.ReadOnly, noMulti}} {
		other := acquire(t, u, o.person, o.level, o.l)
		if other.ThreadID == c.ThreadID || other.Reused {
			t.Errorf("%s at %s (%+v) got pia's pooled connection", o.person, o.level, o.l)
		}
	}
	attrs := l
	attrs.Attrs = map[string]string{"_pid": "4242"}
	if again := acquire(t, u, "pia", access.ReadOnly, attrs); again.ThreadID != c.ThreadID {
		t.Errorf("other connection attributes kept pia from her pooled connection")
	}
}

// An idle pooled connection the server ended is not handed out: the next
// lease logs in afresh.
func TestPoolSkipsDeadConnections(t *testing.T) {
	m, u := newDatabase(t, pooled)
	l := clientLogin(t, u)
	c := acquire(t, u, "pol", access.ReadOnly, l)
	u.Release(c, true)
	if err := m.Exec(context.Background(), "", "KILL CONNECTION "+strconv.FormatUint(uint64(c.ThreadID), 10)); err != nil {
		t.Fatal(err)
	}
	if !waitGone(t, m, c.ThreadID, 2*time.Second) {
		t.Fatal("KILL did not end the connection")
	}
	c2 := acquire(t, u, "pol", access.ReadOnly, l)
	if c2.ThreadID == c.ThreadID || c2.Reused {
		t.Fatalf("a killed pooled connection was handed out (thread %d)", c2.ThreadID)
	}
	if got := queryOne(t, c2, "SELECT 1"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
}

// The watcher leaves pooled connections alone; draining a person's pool
// ends them upstream; with pooling off, Release keeps nothing.
func TestPoolWatcherDrainAndOff(t *testing.T) {
	m := testenv.StartMariaDB(t)
	db := "db" + strconv.FormatInt(dbSeq.Add(1), 10)
	m.CreateDatabase(t, db, "CREATE TABLE t (id INT)")
	intrusions := make(chan upstream.Intrusion, 4)
	p, err := upstream.NewProvisioner(EngineName, upstream.Options{OnIntrusion: func(in upstream.Intrusion) { intrusions <- in }})
	if err != nil {
		t.Fatal(err)
	}
	cfg := upstream.Config{Name: db, Address: m.Address(), Database: db, AdminUser: m.AdminUser, AdminPassword: m.AdminPassword, TLS: "disable", Pool: true}
	d, err := p.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	u := d.(*Upstream)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.Watch(ctx)

	l := clientLogin(t, u)
	c := acquire(t, u, "pru", access.ReadOnly, l)
	u.Release(c, true)
	// A login of the same user opens a window: another connection of
	// pru.ro then is the only one the watcher could mistake.
	c2 := acquire(t, u, "pru", access.ReadOnly, Login{Caps: l.Caps, Charset: 8})
	time.Sleep(2500 * time.Millisecond)
	select {
	case in := <-intrusions:
		t.Fatalf("the watcher took keygate's connection %d for an intrusion", in.PID)
	default:
	}
	if !threadListed(t, m, c.ThreadID) || !threadListed(t, m, c2.ThreadID) {
		t.Fatal("a connection keygate keeps is gone")
	}
	if owners := u.PoolOwners(); len(owners) != 2 || owners[0].Person != "pru" {
		t.Fatalf("owners: %+v", owners)
	}
	if n := u.DrainPool("pru", string(access.ReadOnly)); n != 1 {
		t.Fatalf("DrainPool ended %d connections, want the 1 idle", n)
	}
	if !waitGone(t, m, c.ThreadID, 2*time.Second) {
		t.Fatal("a drained connection is still there upstream")
	}
	// The connection in use when its owner was drained is not pooled.
	if u.Release(c2, true) {
		t.Fatal("a connection leased before its owner was drained went back to the pool")
	}
	if !waitGone(t, m, c2.ThreadID, 2*time.Second) {
		t.Fatal("a connection the pool refused is still there upstream")
	}

	_, off := newDatabase(t, nil)
	if off.Pooling() {
		t.Fatal("Pooling() without pool in the config")
	}
	c3 := acquire(t, off, "pru", access.ReadOnly, l)
	if off.Release(c3, true) {
		t.Fatal("Release kept a connection with pooling off")
	}
	if !waitGone(t, m, c3.ThreadID, 2*time.Second) {
		t.Fatal("a released connection is still there upstream with pooling off")
	}
}

// max_connections and max_connections_per_person bound the connections,
// live and pooled; a lease past them waits queue_timeout and fails with a
// *pool.BudgetError, or takes the slot of an idle pooled connection.
func TestPoolBudget(t *testing.T) {
	m, u := newDatabase(t, func(c *upstream.Config) {
		c.Pool, c.MaxConnections, c.MaxConnectionsPerPerson, c.QueueTimeout = true, 2, 1, 300*time.Millisecond
	})
	l := clientLogin(t, u)
	ctx := context.Background()
	acquire(t, u, "bo", access.ReadOnly, l)
	var be *pool.BudgetError
	start := time.Now()
	if _, err := u.Acquire(ctx, "bo", access.ReadOnly, l); !errors.As(err, &be) || !be.PerPerson || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("bo's second lease: %v after %s, want a per-person budget error after the queue", err, time.Since(start))
	}
	bea := acquire(t, u, "bea", access.ReadOnly, l)
	if _, err := u.Acquire(ctx, "bill", access.ReadOnly, l); !errors.As(err, &be) || be.PerPerson || be.Max != 2 {
		t.Fatalf("bill's lease past max_connections: %v", err)
	}
	if !u.Release(bea, true) {
		t.Fatal("bea's connection was not pooled")
	}
	if _, err := u.Acquire(ctx, "bill", access.ReadOnly, l); err != nil {
		t.Fatalf("bill's lease with bea's idle connection to evict: %v", err)
	}
	if !waitGone(t, m, bea.ThreadID, 2*time.Second) {
		t.Fatal("bea's evicted connection is still there upstream")
	}
	if st := u.PoolStats(); st.Open != 2 || st.Evicted != 1 || st.Timeouts != 2 {
		t.Errorf("stats: %+v", st)
	}
}
