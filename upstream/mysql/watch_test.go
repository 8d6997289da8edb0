package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/upstream"
)

// Someone who learns a window's password and logs in while it is open
// (here: inside the dial) has that connection ended by the watcher, and
// reported; keygate's own connection, recorded with Opened, lives on.
func TestWatchEndsConnectionsKeygateDidNotOpen(t *testing.T) {
	m := testenv.StartMariaDB(t)
	ctx := context.Background()
	name := fmt.Sprintf("db%d", dbSeq.Add(1))
	m.CreateDatabase(t, name, "CREATE TABLE t (id INT)")
	intrusions := make(chan upstream.Intrusion, 4)
	p, err := upstream.NewProvisioner(EngineName, upstream.Options{OnIntrusion: func(in upstream.Intrusion) { intrusions <- in }})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Open(upstream.Config{Name: "orders_my", Address: m.Address(), Database: name, AdminUser: m.AdminUser, AdminPassword: m.AdminPassword, TLS: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	u := d.(*Upstream)
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	user := UserName("frank", access.ReadOnly)
	t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(user)) })

	var ours, theirs *sql.Conn
	var oursID, theirsID uint64
	err = u.WithLogin(ctx, "frank", access.ReadOnly, func(user, password string) error {
		for _, c := range []struct {
			conn **sql.Conn
			id   *uint64
		}{{&ours, &oursID}, {&theirs, &theirsID}} {
			pool, conn, err := connect(ctx, u.PersonConfig(user, password))
			if err != nil {
				return err
			}
			t.Cleanup(func() { conn.Close(); pool.Close() })
			if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(c.id); err != nil {
				return err
			}
			for _, stmt := range u.SessionStart(access.ReadOnly) {
				if _, err := conn.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			*c.conn = conn
		}
		u.Opened(oursID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Closed(oursID)

	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Watch(wctx); close(done) }()
	defer func() { stop(); <-done }()

	start := time.Now()
	select {
	case in := <-intrusions:
		t.Logf("intrusion reported after %v: %+v", time.Since(start), in)
		if uint64(in.PID) != theirsID || in.Role != user || in.Person != "frank" || in.Database != "orders_my" || !in.Terminated || in.Err != nil {
			t.Fatalf("intrusion %+v: want thread %d of %s (frank) on orders_my, terminated", in, theirsID, user)
		}
		if in.ClientAddr != "127.0.0.1" || in.ClientPort == 0 {
			t.Fatalf("intrusion's client %s:%d, want 127.0.0.1 and a port", in.ClientAddr, in.ClientPort)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not end the connection keygate did not open within 5 s")
	}
	if err := theirs.PingContext(ctx); err == nil {
		t.Fatal("the intruder's connection still answers")
	}
	// A second sweep finds nothing more, and keygate's own session is
	// untouched.
	time.Sleep(1500 * time.Millisecond)
	select {
	case in := <-intrusions:
		t.Fatalf("unexpected intrusion %+v", in)
	default:
	}
	var n int
	if err := ours.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		t.Fatalf("keygate's own connection was ended: %v", err)
	}
}

// When the account cannot be locked after a login (here: the admin user
// lost CREATE USER during the window), the watcher keeps trying and locks
// it once the admin user can again.
func TestWatchRetriesFailedLock(t *testing.T) {
	m := testenv.StartMariaDB(t)
	ctx := context.Background()
	name := fmt.Sprintf("db%d", dbSeq.Add(1))
	m.CreateDatabase(t, name, "")
	// An admin user of this test's own, so that taking its privilege away
	// does not disturb other tests.
	admin := fmt.Sprintf("admin%d", dbSeq.Add(1))
	acct := fmt.Sprintf("'%s'@'%%'", admin)
	if err := m.Exec(ctx, "", fmt.Sprintf("CREATE USER %[1]s IDENTIFIED BY 'pw'; GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %[1]s; GRANT SELECT ON mysql.* TO %[1]s; GRANT ALL PRIVILEGES ON `%[2]s`.* TO %[1]s WITH GRANT OPTION", acct, name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+acct) })
	p, err := upstream.NewProvisioner(EngineName, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Open(upstream.Config{Name: name, Address: m.Address(), Database: name, AdminUser: admin, AdminPassword: "pw", TLS: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	u := d.(*Upstream)
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	user := UserName("gina", access.ReadWrite)
	t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(user)) })
	// Privileges apply to new sessions: end the admin user's connections so
	// that the pool reconnects with what it holds now.
	kickAdmin := func() {
		rows, err := m.Query(ctx, "", "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			m.Exec(ctx, "", "KILL CONNECTION "+r[0])
		}
	}
	err = u.WithLogin(ctx, "gina", access.ReadWrite, func(string, string) error {
		if err := m.Exec(ctx, "", "REVOKE CREATE USER ON *.* FROM "+acct); err != nil {
			return err
		}
		kickAdmin()
		return nil
	})
	if err != nil {
		t.Fatalf("WithLogin = %v, want success: the session is up even though the lock failed", err)
	}
	if locked(t, m, user) {
		t.Fatal("the fault did not happen: the account was locked without CREATE USER")
	}
	if err := m.Exec(ctx, "", "GRANT CREATE USER ON *.* TO "+acct); err != nil {
		t.Fatal(err)
	}
	kickAdmin()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Watch(wctx); close(done) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for !locked(t, m, user) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not lock the account within 5 s of the admin user getting CREATE USER back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A connection keygate closed stays its own until the server stops
// listing it, and is forgotten then: the watcher never takes it for an
// intrusion, and keygate keeps no record of it for long.
func TestForgetClosed(t *testing.T) {
	s := newServer()
	s.opened[7], s.opened[8] = true, true
	s.closing[7], s.closing[8] = true, true
	s.forgetClosed([]process{{id: 8}})
	if s.opened[7] || s.closing[7] {
		t.Error("a closed connection the server no longer lists is still recorded")
	}
	if !s.opened[8] || !s.closing[8] {
		t.Error("a closed connection the server still lists was forgotten")
	}
}
