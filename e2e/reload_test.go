package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
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
	beforeReload := time.Now()
	s.editConfig(t, analystsAssignment, strings.Replace(analystsAssignment, "analysts", "auditors", 1))
	out := s.kg(t, 0, "admin", "reload")
	sl.endedWithin(t, "keygate admin reload returned", time.Now(), time.Second, "access revoked")
	mustContain(t, "reload output", out, "1 live session ended")
	if r := s.tokenResult(t, "rita", "orders"); r.code == 0 {
		t.Fatal("a token was issued under the old rules after the reload")
	}
	// Who could reach orders before the reload is answered with the rules
	// of then, from the config history.
	holders := func(args ...string) string {
		var ans api.WhoAnswer
		if err := json.Unmarshal([]byte(s.kg(t, 0, append([]string{"access", "who", "--db", "orders", "--json"}, args...)...)), &ans); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range ans.Holders {
			out = append(out, h.User+":"+h.Access)
		}
		return strings.Join(out, " ")
	}
	if got := holders("--at", beforeReload.UTC().Format(time.RFC3339Nano)); got != "rita:ro" {
		t.Errorf("who could reach orders before the reload: %q, want rita:ro", got)
	}
	if got := holders(); got != "" {
		t.Errorf("who can reach orders after the reload: %q, want nobody", got)
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
