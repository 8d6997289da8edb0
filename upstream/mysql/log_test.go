package mysql

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/localmysql"
	"github.com/keygate/keygate/upstream"
)

// The clear password of a login window never reaches the server: its
// general log, written raw (log-raw, so the server does not mask what it
// logs), holds the window's statements with the hash only. The server
// also requires TLS, which keygate verifies (tls: verify-full).
func TestPasswordNeverInGeneralLog(t *testing.T) {
	ctx := context.Background()
	s, err := localmysql.Start(ctx, localmysql.Options{TLS: true, Settings: map[string]string{
		"general-log":              "ON",
		"general-log-file":         "general.log",
		"log-output":               "FILE",
		"log-raw":                  "ON",
		"require-secure-transport": "ON",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	const admin = "'keygate_admin'@'%'"
	if err := s.Exec(ctx, "", "CREATE USER "+admin+" IDENTIFIED BY 'adminpw'; GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO "+admin+"; GRANT SELECT ON mysql.* TO "+admin+
		"; CREATE DATABASE logged; GRANT ALL PRIVILEGES ON logged.* TO "+admin+" WITH GRANT OPTION; CREATE TABLE logged.t (id INT); INSERT INTO logged.t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	u := open(t, upstream.Config{Name: "logged", Address: s.Address(), Database: "logged", AdminUser: "keygate_admin", AdminPassword: "adminpw",
		TLS: "verify-full", TLSCAFile: caFile}, upstream.Options{})
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	sess := login(t, u, "erin", access.ReadOnly)
	var n int
	if err := sess.db.QueryRowContext(ctx, "SELECT id FROM t").Scan(&n); err != nil || n != 7 {
		t.Fatalf("SELECT over verified TLS = %d, %v", n, err)
	}
	var cipher, ignored string
	if err := sess.db.QueryRowContext(ctx, "SHOW STATUS LIKE 'Ssl_cipher'").Scan(&ignored, &cipher); err != nil || cipher == "" {
		t.Fatalf("the person's session is not over TLS: cipher %q, %v", cipher, err)
	}
	log, err := os.ReadFile(filepath.Join(s.Dir, "data", "general.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), sess.password) {
		t.Fatal("the general log holds the login window's clear password")
	}
	if !strings.Contains(string(log), nativeHash(sess.password)) {
		t.Fatalf("the general log does not show the window's ALTER USER with its hash; is it logging?\n%s", log)
	}
}
