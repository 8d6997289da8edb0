package mysqlwire

import (
	"database/sql"
	"fmt"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream"
)

// A session that quits between commands, outside a transaction, leaves
// its upstream connection to the person's next session, which the audit
// says was reused; one that quits inside a transaction does not, and a
// client's own COM_RESET_CONNECTION works on a reused connection.
func TestPooledSessions(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE items (id INT PRIMARY KEY); INSERT INTO items VALUES (1)", func(c *upstream.Config) { c.Pool = true })
	tok := f.token(t, "hana", access.ReadWrite)
	session := func() (*sql.DB, string) {
		t.Helper()
		db := f.open(t, f.config("hana", tok))
		db.SetMaxOpenConns(1)
		var id string
		if err := db.QueryRow("SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return db, id
	}
	ended := func(id, how string) {
		t.Helper()
		f.audit.WaitFor(t, audit.SessionEnd, func(e audit.Event) bool {
			return fmt.Sprint(e.Detail["upstream_pid"]) == id && e.Detail["upstream_end"] == how
		})
	}

	db, first := session()
	db.Close()
	ended(first, gateway.BackendPooled)

	db, id := session()
	if id != first {
		t.Fatalf("second session got thread %s, want the pooled %s", id, first)
	}
	f.audit.WaitFor(t, audit.SessionStart, func(e audit.Event) bool {
		return e.Detail["upstream_reused"] == true && fmt.Sprint(e.Detail["upstream_pid"]) == first
	})
	if _, err := db.Exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE items SET id = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ended(first, gateway.BackendClosed)

	c, p := f.dialRaw(t, "hana", "orders_my", tok, true)
	if p[0] != mysqlproto.HeaderOK {
		t.Fatalf("login: %q", p)
	}
	if _, err := mysqlproto.Write(c.conn, 0, []byte{gomysql.COM_QUIT}); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	var pooled string
	f.audit.WaitFor(t, audit.SessionEnd, func(e audit.Event) bool {
		if e.Detail["upstream_end"] == gateway.BackendPooled && fmt.Sprint(e.Detail["upstream_pid"]) != first {
			pooled = fmt.Sprint(e.Detail["upstream_pid"])
			return true
		}
		return false
	})
	c, _ = f.dialRaw(t, "hana", "orders_my", tok, true)
	if p := c.command(t, []byte{gomysql.COM_RESET_CONNECTION}); p[0] != mysqlproto.HeaderOK {
		t.Fatalf("COM_RESET_CONNECTION on a reused connection: %q", p)
	}
	if p := c.command(t, append([]byte{gomysql.COM_QUERY}, "UPDATE items SET id = 1 WHERE id = 1"...)); p[0] != mysqlproto.HeaderOK {
		t.Fatalf("after COM_RESET_CONNECTION: %s", errMessage(t, p))
	}
	f.audit.WaitFor(t, audit.SessionStart, func(e audit.Event) bool {
		return e.Detail["upstream_reused"] == true && fmt.Sprint(e.Detail["upstream_pid"]) == pooled
	})
	if st := f.up.PoolStats(); st.Reused != 2 {
		t.Errorf("pool stats: %+v", st)
	}
}
