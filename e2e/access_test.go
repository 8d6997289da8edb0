package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// keygate access explain says allow or deny at each level, naming the
// group and permission set that decided it or the nearest miss, and
// agrees with what the token endpoint does.
func TestAccessExplain(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "xena", "analysts")
	out := s.kg(t, 0, "access", "explain", "--user", "xena", "--db", "orders")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("explain printed %d lines, want one per level:\n%s", len(lines), out)
	}
	mustContain(t, "ro line", lines[0], "allow")
	mustContain(t, "ro line", lines[0], "xena is in analysts → db-readonly (ro) on orders")
	mustContain(t, "rw line", lines[1], "deny")
	mustContain(t, "rw line", lines[1], "xena is in analysts → db-readonly (ro); no assignment grants rw on orders")
	mustContain(t, "admin line", lines[2], "deny")

	var ex api.Explanation
	if err := json.Unmarshal([]byte(s.kg(t, 0, "access", "explain", "--user", "xena", "--db", "orders", "--access", "ro", "--json")), &ex); err != nil {
		t.Fatal(err)
	}
	if len(ex.Decisions) != 1 || !ex.Decisions[0].Allowed || ex.Decisions[0].Group != "analysts" || ex.Decisions[0].PermissionSet != "db-readonly" || ex.Decisions[0].TokenTTL != "15m0s" {
		t.Fatalf("explain --json = %+v", ex)
	}
	// The token endpoint decides the same way.
	if r := s.tokenResult(t, "xena", "orders", "--access", "rw"); r.code == 0 {
		t.Fatal("a token at rw was issued where explain says deny")
	}
	s.token(t, "xena", "orders", "--access", "ro")

	out = s.kg(t, 0, "access", "explain", "--user", "nobody-at-all", "--db", "orders", "--access", "ro")
	mustContain(t, "unknown person", out, "nobody-at-all is not a keygate user")
	r := s.run(t, nil, "access", "explain", "--user", "xena")
	if r.code != 2 || !strings.Contains(r.stderr, "--user and --db are required") {
		t.Fatalf("explain without --db: exit %d: %s", r.code, r.stderr)
	}
}
