package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// mariadbCLI runs the mariadb client the way the README shows, with args
// before the database name, and returns what it printed and its exit code.
func mariadbCLI(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command("mariadb", append([]string{"--no-defaults"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run mariadb: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// The RDS worked example's client command, as far as Debian's client
// allows, reaches MariaDB through keygate with an ro token, with and
// without the cleartext flag; reads work, and every route to writing or
// to more privilege is refused.
func TestMySQLSeedsCommand(t *testing.T) {
	if _, err := exec.LookPath("mariadb"); err != nil {
		t.Skip("the mariadb client is not installed (apt-get install mariadb-client)")
	}
	s := startServerWith(t, "myseeds", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "alice", "analysts")
	addr, ca := s.mysqlGateway(t)
	host, port, _ := net.SplitHostPort(addr)
	base := func(tok string) []string {
		return []string{"-h", host, "-P", port, "-u", "alice", "--password=" + tok, "--ssl-ca=" + ca, "--ssl-verify-server-cert"}
	}
	for _, c := range []struct {
		name string
		args []string
		auth string
	}{
		{"no flag", nil, "caching_sha2_password"},
		{"enable-cleartext-plugin", []string{"--enable-cleartext-plugin"}, "caching_sha2_password"},
		{"default-auth", []string{"--enable-cleartext-plugin", "--default-auth=mysql_clear_password"}, "mysql_clear_password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := s.token(t, "alice", "orders_my")
			args := append(append(base(tok), c.args...), "--batch", "-e", "SELECT name FROM items WHERE id = 1", "orders_my")
			r := mariadbCLI(t, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "widget") {
				t.Fatalf("mariadb %s: exit %d\n%s%s", c.name, r.code, r.stdout, r.stderr)
			}
			starts := s.audit(t, "--user", "alice", "--db", "orders_my", "--type", "session.start")
			if _, ok := findEvent(starts, func(e api.AuditEvent) bool { return e.Detail["auth"] == c.auth }); !ok {
				t.Fatalf("no session.start with detail.auth %s: %+v", c.auth, starts)
			}
		})
	}

	tok := s.token(t, "alice", "orders_my")
	for _, stmt := range []string{
		"INSERT INTO items VALUES (2, 'gadget')",
		"GRANT ALL ON *.* TO 'alice.ro'@'%'",
		"SET ROLE keygate_orders_my_rw",
		"CREATE TABLE t2 (x int)",
		"SET PASSWORD = PASSWORD('chosen-by-alice')",
	} {
		r := mariadbCLI(t, append(base(tok), "-e", stmt, "orders_my")...)
		if r.code == 0 {
			t.Errorf("%s: allowed to an ro session", stmt)
		}
	}
	// A password she sets upstream would open nothing: her user is
	// locked between keygate's own logins.
	my := s.my
	r := mariadbCLI(t, "-h", my.Host, "-P", itoa(my.Port), "-u", "alice.ro", "--password=chosen-by-alice", "--ssl", "-e", "SELECT 1")
	if r.code == 0 {
		t.Fatal("alice logged in upstream directly")
	}
	if rows := s.upstreamMySQL(t, "SELECT count(*) FROM items"); rows[0][0] != "1" {
		t.Fatalf("items upstream: %s rows, want 1", rows[0][0])
	}
	refused := s.audit(t, "--user", "alice", "--type", "query.refused")
	if _, ok := findEvent(refused, func(e api.AuditEvent) bool { return strings.Contains(e.Query, "SET PASSWORD") }); !ok {
		t.Errorf("SET PASSWORD's refusal is not in the audit: %+v", refused)
	}
	queries := s.audit(t, "--user", "alice", "--db", "orders_my", "--type", "query")
	if e, ok := findEvent(queries, func(e api.AuditEvent) bool { return strings.HasPrefix(e.Query, "INSERT INTO items") }); !ok {
		t.Errorf("the refused INSERT is not in the audit")
	} else if out := fmt.Sprint(e.Detail["outcome"]); !strings.Contains(out, "42000") {
		t.Errorf("INSERT's outcome = %s, want the upstream's refusal", out)
	}
}

// Refused connections are each audited with their reason; revoking a
// person ends her live session and its upstream connection within a
// second.
func TestMySQLRefusalsAndRevocation(t *testing.T) {
	if _, err := exec.LookPath("mariadb"); err != nil {
		t.Skip("the mariadb client is not installed (apt-get install mariadb-client)")
	}
	s := startServerWith(t, "myrevoke", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "bob", "analysts")
	s.addUser(t, "carl", "analysts")
	addr, ca := s.mysqlGateway(t)
	host, port, _ := net.SplitHostPort(addr)
	tok := s.token(t, "bob", "orders_my")
	carl := s.token(t, "carl", "orders_my")
	s.kg(t, 0, "admin", "user", "disable", "carl")
	for _, c := range []struct {
		name, user, db, tok string
		tls                 bool
		reason              string
	}{
		{"no TLS", "bob", "orders_my", tok, false, "TLS is required"},
		{"tampered", "bob", "orders_my", tok[:len(tok)-4] + "AAAA", true, "token"},
		{"wrong user", "dora", "orders_my", tok, true, "issued to bob, not dora"},
		{"wrong database", "bob", "orders", tok, true, "is for database orders_my"},
		{"disabled", "carl", "orders_my", carl, true, "access denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"-h", host, "-P", port, "-u", c.user, "-e", "SELECT 1", c.db}
			if c.tls {
				args = append([]string{"--ssl-ca=" + ca, "--ssl-verify-server-cert"}, args...)
			} else {
				args = append([]string{"--skip-ssl"}, args...)
			}
			cmd := exec.Command("mariadb", append([]string{"--no-defaults"}, args...)...)
			cmd.Env = append(os.Environ(), "MYSQL_PWD="+c.tok)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.reason) {
				t.Fatalf("want a refusal saying %q: %v\n%s", c.reason, err, out)
			}
			refusals := s.audit(t, "--type", "connect.refused", "--db", c.db)
			if _, ok := findEvent(refusals, func(e api.AuditEvent) bool { return strings.Contains(e.Reason, c.reason) }); !ok {
				t.Fatalf("no connect.refused saying %q: %+v", c.reason, refusals)
			}
		})
	}

	db := s.mysqlDB(t, "bob", "orders_my", tok)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var thread string
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&thread); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(ctx, "SELECT SLEEP(60)")
		ended <- err
	}()
	time.Sleep(300 * time.Millisecond)
	s.kg(t, 0, "admin", "user", "disable", "bob")
	returned := time.Now()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the statement completed after revocation")
		}
	case <-time.After(time.Second):
		t.Fatal("bob's session still ran 1 s after keygate admin user disable returned")
	}
	clientEnded := time.Since(returned)
	gone := holdsWithin(2*time.Second, func() bool {
		return s.upstreamMySQL(t, "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = "+thread)[0][0] == "0"
	})
	upstreamEnded := time.Since(returned)
	if !gone {
		t.Fatalf("bob's upstream connection %s still there 2 s after revocation", thread)
	}
	fmt.Printf("MySQL revocation: session ended %s and upstream connection gone %s after keygate admin user disable returned\n",
		clientEnded.Round(100*time.Microsecond), upstreamEnded.Round(100*time.Microsecond))
	if upstreamEnded > time.Second {
		t.Errorf("upstream connection gone after %s, want within 1 s", upstreamEnded)
	}
	ends := s.audit(t, "--user", "bob", "--db", "orders_my", "--type", "session.end")
	if len(ends) != 1 || !strings.Contains(ends[0].Reason, "access revoked") || ends[0].Detail["upstream_end"] != "terminated" {
		t.Fatalf("session.end after revocation: %+v", ends)
	}
}
