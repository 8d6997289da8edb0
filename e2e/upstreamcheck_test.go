package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// keygate config check --upstream says, per database, whether keygate's
// admin role has what keygate needs, with the statements that fix it, and
// what pg_hba.conf allows.
func TestConfigCheckUpstream(t *testing.T) {
	s := sharedServer(t)
	env := []string{"ORDERS_ADMIN_PASSWORD=" + s.pg.AdminPassword}
	r := s.run(t, env, "config", "check", "--upstream")
	if r.code != 0 {
		t.Fatalf("config check --upstream: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"database orders: ready", "database billing: ready", "database orders: pg_hba.conf: keygate may not read"} {
		mustContain(t, "config check --upstream", r.stdout, want)
	}

	if err := s.pg.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS keygate_checkme; CREATE ROLE keygate_checkme LOGIN CREATEROLE PASSWORD 'checkme'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pg.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS keygate_checkme") })
	raw, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	weak := filepath.Join(t.TempDir(), "weak.yaml")
	cfg := strings.ReplaceAll(string(raw), "user: keygate_admin\n", "user: keygate_checkme\n")
	cfg = strings.ReplaceAll(cfg, "data_dir: ./data", "data_dir: "+filepath.Join(s.dir, "data"))
	if err := os.WriteFile(weak, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygateBin, "config", "check", "--upstream", "--config", weak)
	cmd.Env = append(os.Environ(), "ORDERS_ADMIN_PASSWORD=checkme")
	r = runCmd(t, cmd)
	if r.code != 1 {
		t.Fatalf("config check --upstream with a weak admin role: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	mustContain(t, "config check --upstream", r.stdout, "database orders: not ready")
	mustContain(t, "config check --upstream", r.stdout, "GRANT pg_signal_backend TO keygate_checkme; GRANT pg_read_all_stats TO keygate_checkme;")
}
