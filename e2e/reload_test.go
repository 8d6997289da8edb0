package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The analysts' assignment as configTemplate writes it.
const analystsAssignment = "  - group: analysts\n    permission_set: db-readonly\n    databases: [orders]\n"

// editConfig rewrites the server's config file with old replaced by new.
func (s *kgServer) editConfig(t *testing.T, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(old)) {
		t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(s.cfgPath, bytes.Replace(raw, []byte(old), []byte(new), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A config change applies while the server runs, through keygate admin
// reload or SIGHUP: a live session whose access the new rules take away
// ends within a second, access they give works at once, a config with
// errors changes nothing, and settings that need a restart are named.
func TestReload(t *testing.T) {
	s := startServer(t, "reload", "", true)
	s.addUser(t, "rita", "analysts")
	tok := s.token(t, "rita", "orders")
	sl := s.startSleeper(t, "rita", "orders", tok, "reload-rita")

	// The analysts lose orders: rita's live session ends.
	s.editConfig(t, analystsAssignment, strings.Replace(analystsAssignment, "analysts", "auditors", 1))
	out := s.kg(t, 0, "admin", "reload")
	sl.endedWithin(t, "keygate admin reload returned", time.Now(), time.Second, "access revoked")
	mustContain(t, "reload output", out, "1 live sessions ended")
	if r := s.tokenResult(t, "rita", "orders"); r.code == 0 {
		t.Fatal("a token was issued under the old rules after the reload")
	}

	// A config with errors is refused with its line; the rules stay.
	s.editConfig(t, "permission_set: db-readonly", "permission_set: db-reado")
	r := s.run(t, nil, "admin", "reload")
	if r.code == 0 {
		t.Fatal("a config naming an undefined permission set was reloaded")
	}
	mustContain(t, "refused reload", r.stderr, "keygate.yaml:")
	mustContain(t, "refused reload", r.stderr, `"db-reado"`)
	s.editConfig(t, "permission_set: db-reado", "permission_set: db-readonly")
	if refused := s.audit(t, "--type", "config.refused"); len(refused) != 1 || !strings.Contains(refused[0].Reason, "db-reado") {
		t.Fatalf("config.refused events: %+v", refused)
	}
	if r := s.tokenResult(t, "rita", "orders"); r.code == 0 {
		t.Fatal("a token was issued after a refused reload")
	}

	// SIGHUP gives the analysts orders back, and a changed setting that
	// needs a restart is named in the log.
	s.editConfig(t, strings.Replace(analystsAssignment, "analysts", "auditors", 1), analystsAssignment)
	s.editConfig(t, "shutdown_grace: 2s", "shutdown_grace: 3s")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(s.audit(t, "--type", "config.reload")) == 2 })
	if r := s.tokenResult(t, "rita", "orders"); r.code != 0 {
		t.Fatalf("no token after SIGHUP restored the assignment: %s", r.stderr)
	}
	reloads := s.audit(t, "--type", "config.reload")
	if got := fmt.Sprint(reloads[1].Detail["restart_needed"]); got != "[shutdown_grace]" {
		t.Errorf("restart_needed after changing shutdown_grace: %v", got)
	}
}
