package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/internal/testenv"
)

// TestReport is the acceptance of keygate report: a stray password login
// on the upstream is listed as a standing credential, and after a person
// connects and another's live session is revoked, credential age and
// time-to-revoke have figures.
func TestReport(t *testing.T) {
	// Roles are server-wide in the shared PostgreSQL: a run before this
	// one, or another test, may have left legacy behind.
	pg := testenv.StartPostgres(t)
	dropLegacy := func() {
		if err := pg.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS legacy"); err != nil {
			t.Fatal(err)
		}
	}
	dropLegacy()
	t.Cleanup(dropLegacy)
	s := startServerWith(t, "report", serverOptions{stopWithTest: true, ordersSetup: "CREATE ROLE legacy LOGIN PASSWORD 'x'"})
	s.addUser(t, "rita", "analysts")
	s.addUser(t, "reed", "analysts")

	// rita connects with psql and runs a query.
	if r := s.psql(t, s.connString("rita", "orders"), s.token(t, "rita", "orders"), "SELECT 1"); r.code != 0 {
		t.Fatalf("rita's psql: exit %d: %s", r.code, r.stderr)
	}
	// reed's live session ends when he is disabled.
	sl := s.startSleeper(t, "reed", "orders", s.token(t, "reed", "orders"), "report-revoke")
	s.kg(t, 0, "admin", "user", "disable", "reed")
	sl.endedWithin(t, "keygate admin user disable returned", time.Now(), 5*time.Second, "access revoked")

	// The session's end reaches the audit log a moment after psql sees it.
	var r api.Report
	waitFor(t, 10*time.Second, func() bool {
		r = kgJSON[api.Report](t, s, "report", "--json")
		return r.TimeToRevoke.Count >= 1 && r.CredentialAge.Count >= 1
	})
	if !slices.ContainsFunc(r.Standing.Credentials, func(c api.StandingCredential) bool {
		return c.Database == "orders" && c.Name == "legacy" && !c.Managed && c.Why != ""
	}) {
		t.Errorf("legacy is not a standing credential of orders: %+v (scan errors %+v)", r.Standing.Credentials, r.Standing.ScanErrors)
	}
	if len(r.Standing.ScanErrors) != 0 {
		t.Errorf("scan errors: %+v", r.Standing.ScanErrors)
	}
	if r.CredentialAge.Count < 2 || r.CredentialAge.MaxSeconds > 60 || r.CredentialAge.TargetSeconds != 3600 {
		t.Errorf("credential age = %+v, want rita's and reed's sessions, with tokens under a minute old", r.CredentialAge)
	}
	if r.TimeToRevoke.MaxSeconds >= 5 || r.TimeToRevoke.OverTarget != 0 || r.TimeToRevoke.TargetSeconds != 900 {
		t.Errorf("time to revoke = %+v, want under 5s and the default 15m target", r.TimeToRevoke)
	}
	if r.Since.After(r.Generated.Add(-23*time.Hour)) || r.Generated.IsZero() {
		t.Errorf("window %s to %s, want the last day", r.Since, r.Generated)
	}

	out := s.kg(t, 0, "report")
	for _, want := range []string{"standing credentials: ", "(target 0)", "legacy", "credential age at use: p50 ", "time to revoke: p50 ", "over the 15m target", "permission-set sprawl: 4 permission sets"} {
		mustContain(t, "keygate report", out, want)
	}
	t.Logf("keygate report:\n%s", out)

}
