package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartMariaDBIsShared(t *testing.T) {
	if a, b := StartMariaDB(t), StartMariaDB(t); a != b {
		t.Fatal("StartMariaDB started a second server in the same package")
	}
}

// The admin user's grants are enough to run person accounts the way the
// gateway will: roles on a database, a locked-by-default user per person
// and level, a look at and a kill of that user's query.
func TestMariaDBAdminRunsPersonAccounts(t *testing.T) {
	ctx := context.Background()
	m := StartMariaDB(t)
	m.CreateDatabase(t, "orders", "CREATE TABLE items (id INT); INSERT INTO items VALUES (1)")
	admin := m.open(t, m.AdminConfig(""))
	const person = "'alice.ro'@'%'"
	for _, q := range []string{
		"CREATE ROLE orders_ro",
		"GRANT SELECT ON orders.* TO orders_ro",
		"CREATE USER " + person + " IDENTIFIED BY 'token-1' ACCOUNT LOCK",
		"GRANT orders_ro TO " + person,
		"ALTER USER " + person + " ACCOUNT UNLOCK",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("as admin, %s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		m.Exec(context.Background(), "", "DROP USER IF EXISTS "+person+"; DROP ROLE IF EXISTS orders_ro")
	})
	var grants string
	if err := admin.QueryRowContext(ctx, "SHOW GRANTS FOR "+person).Scan(&grants); err != nil {
		t.Fatalf("as admin, SHOW GRANTS: %v", err)
	}

	alice := m.personDB(t, "alice.ro", "token-1")
	conn, err := alice.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if _, err := conn.ExecContext(ctx, "SET ROLE orders_ro"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders.items").Scan(&n); err != nil || n != 1 {
		t.Fatalf("person SELECT = %d, %v", n, err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO orders.items VALUES (2)"); err == nil {
		t.Fatal("an ro person could INSERT")
	}

	// The admin sees the person's running query and kills it.
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		var r int
		done <- conn.QueryRowContext(ctx, "SELECT SLEEP(30)").Scan(&r)
	}()
	var id int64
	for {
		err := admin.QueryRowContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'alice.ro' AND INFO LIKE 'SELECT SLEEP%'").Scan(&id)
		if err == nil {
			break
		}
		if !errors.Is(err, sql.ErrNoRows) || time.Since(began) > 5*time.Second {
			t.Fatalf("as admin, find the person's query: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL QUERY %d", id)); err != nil {
		t.Fatalf("as admin, KILL QUERY: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the killed query still runs")
	}

	if _, err := admin.ExecContext(ctx, "ALTER USER "+person+" ACCOUNT LOCK"); err != nil {
		t.Fatal(err)
	}
	var me *mysql.MySQLError
	if err := m.personDB(t, "alice.ro", "token-1").PingContext(ctx); !errors.As(err, &me) || me.Number != 4151 {
		t.Fatalf("login to a locked account: %v, want 4151 (account locked)", err)
	}
}

// The admin user is not root in disguise.
func TestMariaDBAdminIsNotRoot(t *testing.T) {
	ctx := context.Background()
	m := StartMariaDB(t)
	admin := m.open(t, m.AdminConfig(""))
	for _, q := range []string{
		"GRANT ALL PRIVILEGES ON *.* TO 'keygate_admin'@'%'",
		"UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'root'",
		"CREATE DATABASE not_the_admins",
		"SHUTDOWN",
	} {
		if _, err := admin.ExecContext(ctx, q); err == nil {
			t.Errorf("as admin, %s succeeded", q)
		}
	}
}

func (m *MariaDB) personDB(t *testing.T, user, password string) *sql.DB {
	cfg := m.Config("")
	cfg.User, cfg.Passwd = user, password
	return m.open(t, cfg)
}
