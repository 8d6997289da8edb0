package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keygate db connect opens the mariadb client on a MariaDB database through
// the MySQL gateway, as the person's upstream user at the level asked for,
// and exits with the client's code.
func TestDBConnectMySQL(t *testing.T) {
	s := startServerWith(t, "dbconnectmy", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "erin", "engineers")
	quiet := []string{"--batch", "--skip-column-names"}

	r := s.connectRun(t, "alice", nil, append([]string{"db", "connect", "orders_my", "--"}, append(quiet, "-e", "select current_user(), name from items")...)...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "alice.ro@%\twidget" {
		t.Fatalf("keygate db connect orders_my -- -e '...': exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = s.connectRun(t, "erin", nil, append([]string{"db", "connect", "orders_my", "--access", "rw", "--"}, append(quiet, "-e", "insert into items values (2, 'gadget'); select current_user()")...)...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "erin.rw@%" {
		t.Errorf("keygate db connect orders_my --access rw as erin: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if rows := s.upstreamMySQL(t, "SELECT count(*) FROM items"); rows[0][0] != "2" {
		t.Errorf("items upstream after erin's insert: %v, want 2", rows[0][0])
	}
	// The client's own exit code comes back: 1 for a failed statement.
	r = s.connectRun(t, "alice", nil, "db", "connect", "orders_my", "--", "-e", "select * from nope")
	if r.code != 1 || !strings.Contains(r.stderr, "doesn't exist") {
		t.Errorf("a failing statement: exit %d, want mariadb's 1; stderr: %s", r.code, r.stderr)
	}
	// The session stays in its own database.
	r = s.connectRun(t, "alice", nil, "db", "connect", "orders_my", "--", "-e", "use mysql")
	if r.code != 1 || !strings.Contains(r.stderr, "may use database orders_my only") {
		t.Errorf("use mysql: exit %d, want keygate's refusal; stderr: %s", r.code, r.stderr)
	}
	r = s.connectRun(t, "alice", []string{"PATH=" + t.TempDir()}, "db", "connect", "orders_my")
	if r.code != 1 || !strings.Contains(r.stderr, "apt install mariadb-client") {
		t.Errorf("no mysql client on PATH: exit %d: %s", r.code, r.stderr)
	}

	// db token finds orders_my by its upstream address, as aws rds
	// generate-db-auth-token scripts name it.
	host, port, _ := net.SplitHostPort(s.my.Address())
	r = s.connectRun(t, "alice", nil, "db", "token", "--hostname", host, "--port", port, "--username", "alice.ro")
	if r.code != 0 {
		t.Fatalf("keygate db token --hostname %s --port %s: exit %d: %s", host, port, r.code, r.stderr)
	}
	var name string
	if err := s.mysqlDB(t, "alice", "orders_my", strings.TrimSpace(r.stdout)).QueryRow("SELECT name FROM items WHERE id = 1").Scan(&name); err != nil || name != "widget" {
		t.Errorf("the token from --hostname and --port: %q, %v", name, err)
	}
}

// An Oracle mysql client gets its own TLS flags, and the token only in
// MYSQL_PWD, never in the arguments that ps shows.
func TestDBConnectMySQLOracleClient(t *testing.T) {
	s := startServerWith(t, "dbconnectmyora", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "alice", "analysts")
	out := t.TempDir()
	script := filepath.Join(t.TempDir(), "mysql")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
if [ "$1" = --version ]; then echo 'mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'; exit 0; fi
printf '%s\n' "$@" > "$OUT/argv"
printf '%s' "$MYSQL_PWD" > "$OUT/token"
exit 7
`), 0o755); err != nil {
		t.Fatal(err)
	}
	r := s.connectRun(t, "alice", []string{"OUT=" + out, "MYSQL_PWD=stale"}, "db", "connect", "orders_my", "--client", script, "--", "-e", "select 1")
	if r.code != 7 {
		t.Fatalf("exit %d, want the client's 7: %s", r.code, r.stderr)
	}
	argv, err := os.ReadFile(filepath.Join(out, "argv"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(out, "token"))
	if err != nil || !strings.HasPrefix(string(token), "v4.public.") {
		t.Fatalf("MYSQL_PWD = %q, %v; want a token", token, err)
	}
	if strings.Contains(string(argv), string(token)) {
		t.Errorf("the token is in the client's arguments:\n%s", argv)
	}
	for _, want := range []string{"--host=localhost", "--port=" + itoa(s.myPort), "--user=alice", "--database=orders_my", "--ssl-mode=VERIFY_IDENTITY", "--ssl-ca=", "-e\nselect 1\n"} {
		if !strings.Contains(string(argv), want) {
			t.Errorf("arguments lack %q:\n%s", want, argv)
		}
	}
}
