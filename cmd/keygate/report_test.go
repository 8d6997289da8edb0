package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// The report reads as an auditor needs it: each figure with its target,
// each standing credential with its database and why, a database that
// could not be scanned named with the error.
func TestPrintReport(t *testing.T) {
	gen := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	since := gen.Add(-24 * time.Hour)
	r := api.Report{Generated: gen, Since: since,
		Standing: api.StandingReport{
			Credentials: []api.StandingCredential{
				{Database: "orders", Name: "legacy", Why: "can log in with a password"},
				{Database: "orders", Name: "kg_alice", Why: "has LOGIN outside a login window", Managed: true},
			},
			ScanErrors: []api.ScanError{{Database: "billing", Error: "scan for standing credentials: connection refused"}},
		},
		CredentialAge: api.Durations{Count: 12, P50Seconds: 0.14, P99Seconds: 192, MaxSeconds: 240, TargetSeconds: 3600},
		TimeToRevoke:  api.Durations{Count: 3, P50Seconds: 0.18, P99Seconds: 1000, MaxSeconds: 1000, TargetSeconds: 900, OverTarget: 1},
		Sprawl:        api.Sprawl{PermissionSets: 4, Assignments: 5, Grants: 120, Warning: true},
		Findings: api.AccessFindings{Pattern: "^kg-(?P<permission_set>.+)$", Groups: 7, Assigned: 5,
			Findings: []api.AccessFinding{{Group: "team-x", Kind: "no_match", Reason: "does not match the pattern"}}},
	}
	var out bytes.Buffer
	if err := printReport(&out, r); err != nil {
		t.Fatal(err)
	}
	local := since.Local().Format(reportTime)
	for _, want := range []string{
		"audit figures since " + local + " (24h)\n",
		"standing credentials: 2 (target 0), 1 of them a keygate person role not at rest\n",
		"  DATABASE  NAME      WHY\n",
		"  orders    legacy    can log in with a password\n",
		"  orders    kg_alice  has LOGIN outside a login window\n",
		"  billing could not be scanned, so its count is unknown: scan for standing credentials: connection refused\n",
		"credential age at use: p50 140ms, p99 3m12s, max 4m over 12 sessions since " + local + " (target under 1h): 0 over the 1h target\n",
		"time to revoke: p50 180ms, p99 16m40s, max 16m40s over 3 revoked sessions since " + local + " (target under 15m): 1 over the 15m target\n",
		"permission-set sprawl: 4 permission sets, 5 assignments, 120 grants\n",
		"  warning: permission sets grew faster than active people",
		"naming findings: 1 (target 0), group naming rule ^kg-(?P<permission_set>.+)$ over 7 groups\n",
		"  team-x  no_match  does not match the pattern\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// Nothing measured says so, and still names the target.
	var empty bytes.Buffer
	if err := printReport(&empty, api.Report{Generated: gen, Since: since, Standing: api.StandingReport{},
		CredentialAge: api.Durations{TargetSeconds: 3600}, TimeToRevoke: api.Durations{TargetSeconds: 900}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"standing credentials: 0 (target 0)\n",
		"credential age at use: no sessions since " + local + " (target under 1h)\n",
		"time to revoke: no revoked sessions since " + local + " (target under 15m)\n",
		"naming findings: none to find, no group naming rule is configured\n",
	} {
		if !strings.Contains(empty.String(), want) {
			t.Errorf("empty report lacks %q:\n%s", want, empty.String())
		}
	}
	if strings.Contains(empty.String(), "DATABASE") {
		t.Errorf("an empty report prints a table header:\n%s", empty.String())
	}
}
