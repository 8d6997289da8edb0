package mysql

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/access"
)

func TestPersonUserIsCreatedLocked(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	user := UserName("carol", access.ReadOnly)
	t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(user)) })
	if err := u.ensurePerson(ctx, "carol", user, access.ReadOnly); err != nil {
		t.Fatal(err)
	}
	if !locked(t, m, user) {
		t.Fatalf("%s is not locked after creation", user)
	}
	grants, err := m.Query(ctx, "", "SHOW GRANTS FOR "+account(user))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("GRANT `%s` TO `%s`@`%%`", u.RoleName(access.ReadOnly), user)
	if len(grants) != 2 || grants[0][0] != want {
		t.Fatalf("grants of %s: %v, want only USAGE and %q (no ADMIN OPTION)", user, grants, want)
	}
}

func TestLevels(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range access.Levels {
		t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(UserName("alice", l))) })
	}

	ro := login(t, u, "alice", access.ReadOnly)
	var v string
	if err := ro.db.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "one" {
		t.Fatalf("SELECT as ro = %q, %v", v, err)
	}
	ro.mustRefuse(t, "INSERT INTO t VALUES (2, 'two')")
	ro.mustRefuse(t, "UPDATE t SET v = 'x'")
	ro.mustRefuse(t, "CREATE TABLE ro_made (id INT)")
	ro.mustRefuse(t, "CREATE TEMPORARY TABLE ro_tmp (id INT)")
	ro.mustRefuse(t, "GRANT SELECT ON "+quoteIdent(u.cfg.Database)+".* TO "+account(UserName("alice", access.ReadWrite)))
	ro.mustRefuse(t, "CREATE USER 'mallory'@'%'")
	ro.mustRefuse(t, "SET PASSWORD FOR "+account(UserName("alice", access.ReadWrite))+" = PASSWORD('x')")
	ro.mustRefuse(t, "SET ROLE "+quoteIdent(u.RoleName(access.Admin)))
	ro.mustRefuse(t, "SELECT * FROM t INTO OUTFILE '"+filepath.Join(m.Dir, "files", "out.txt")+"'")
	ro.mustRefuse(t, "LOAD DATA INFILE '"+filepath.Join(m.Dir, "files", "in.txt")+"' INTO TABLE t")

	rw := login(t, u, "alice", access.ReadWrite)
	rw.mustExec(t, "INSERT INTO t VALUES (2, 'two')")
	rw.mustExec(t, "CREATE TEMPORARY TABLE rw_tmp (id INT)")
	rw.mustRefuse(t, "CREATE TABLE rw_made (id INT)")
	rw.mustRefuse(t, "DROP TABLE t")

	admin := login(t, u, "alice", access.Admin)
	admin.mustExec(t, "CREATE TABLE admin_made (id INT)")
	admin.mustExec(t, "ALTER TABLE admin_made ADD COLUMN v TEXT")
	admin.mustRefuse(t, "CREATE USER 'mallory'@'%'")
	admin.mustRefuse(t, "GRANT SELECT ON "+quoteIdent(u.cfg.Database)+".* TO "+account(UserName("alice", access.ReadOnly)))
}

// After the window, the account is locked and the window's password opens
// nothing, nor does one the person sets from inside the session; the
// session itself lives on.
func TestWindowClosesAfterLogin(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(UserName("bob", access.ReadOnly)))
	})
	s := login(t, u, "bob", access.ReadOnly)
	if !locked(t, m, s.user) {
		t.Fatalf("%s is unlocked after the login window", s.user)
	}
	if err := s.db.PingContext(ctx); err != nil {
		t.Fatalf("the session ended with the window: %v", err)
	}
	if err := tryLogin(ctx, u.PersonConfig(s.user, s.password)); err == nil {
		t.Fatal("the window's password still logs in after the window closed")
	}
	s.mustExec(t, "SET PASSWORD = PASSWORD('chosen-by-bob')")
	if err := tryLogin(ctx, u.PersonConfig(s.user, "chosen-by-bob")); err == nil {
		t.Fatal("a password set from inside the session logs in directly")
	}
}

// A failing dial still closes the window.
func TestWindowClosesOnDialError(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	user := UserName("dave", access.ReadWrite)
	t.Cleanup(func() { m.Exec(context.Background(), "", "DROP USER IF EXISTS "+account(user)) })
	boom := errors.New("client went away")
	var password string
	err := u.WithLogin(ctx, "dave", access.ReadWrite, func(_, p string) error {
		password = p
		if locked(t, m, user) {
			t.Errorf("%s is locked inside its login window", user)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithLogin = %v, want the dial's error", err)
	}
	if !locked(t, m, user) {
		t.Fatalf("%s is unlocked after a failed dial", user)
	}
	if err := tryLogin(ctx, u.PersonConfig(user, password)); err == nil {
		t.Fatal("the window's password logs in after a failed dial")
	}
}

func tryLogin(ctx context.Context, cfg *driver.Config) error {
	pool, conn, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	conn.Close()
	pool.Close()
	return nil
}
