package config

import (
	"strings"
	"testing"
	"time"
)

func TestReportRevocationTarget(t *testing.T) {
	if c := mustParse(t, minimal); time.Duration(c.Report.RevocationTarget) != 15*time.Minute {
		t.Errorf("default revocation_target = %s, want 15m", time.Duration(c.Report.RevocationTarget))
	}
	if c := mustParse(t, minimal+"report:\n  revocation_target: 30s\n"); time.Duration(c.Report.RevocationTarget) != 30*time.Second {
		t.Errorf("revocation_target 30s = %s", time.Duration(c.Report.RevocationTarget))
	}
	for in, want := range map[string]string{
		"revocation_target: -1m":  ":3: report.revocation_target -1m0s: use a duration above zero, such as 15m",
		"revocation_target: soon": `invalid duration "soon"`,
		"revocation_taget: 1m":    "revocation_taget",
	} {
		if msg := parseErr(t, minimal+"report:\n  "+in+"\n"); !strings.Contains(msg, want) {
			t.Errorf("report %s: %q, want it to contain %q", in, msg, want)
		}
	}
}
