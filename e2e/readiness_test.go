package e2e

import (
	"os"
	"strings"
	"testing"
)

// With a wrong upstream admin password, the server names each database it
// cannot serve, and why, before it says it is ready; a person connecting
// is told the cause, and the refusal is logged as a warning for the
// operator.
func TestWrongAdminPasswordIsReportedEarly(t *testing.T) {
	s := startServerWith(t, "badadmin", serverOptions{stopWithTest: true, env: []string{"ORDERS_ADMIN_PASSWORD=not-the-password"}})
	s.addUser(t, "alice", "analysts")

	log, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(log)
	ready := strings.Index(text, "keygate is ready")
	if ready < 0 {
		t.Fatalf("no ready line:\n%s", text)
	}
	for _, db := range []string{"orders", "billing"} {
		i := strings.Index(text, "database cannot be served; connections to it are refused until keygate's checks pass\" database="+db)
		if i < 0 || i > ready {
			t.Errorf("no warning about %s before the ready line:\n%s", db, text)
		}
	}
	mustContain(t, "ready line", text[ready:], "databases_ready=0/2")

	r := s.psql(t, s.connString("alice", "orders"), s.token(t, "alice", "orders"), "SELECT 1")
	if r.code == 0 {
		t.Fatal("connected through an upstream whose admin password is wrong")
	}
	mustContain(t, "refusal", r.stderr, "the upstream refuses keygate's admin role; whoever runs keygate must fix its password (admin.password_env) or pg_hba.conf")
	log, _ = os.ReadFile(s.logPath)
	var refusal string
	for line := range strings.Lines(string(log)) {
		if strings.Contains(line, "connection refused") && strings.Contains(line, "user=alice") {
			refusal = line
		}
	}
	if !strings.Contains(refusal, "level=WARN") {
		t.Errorf("the refusal is not logged as a warning: %q", refusal)
	}
}
