package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeReporter answers with a fixed report and remembers the window asked.
type fakeReporter struct {
	since time.Time
}

func (f *fakeReporter) Report(_ context.Context, since time.Time) (Report, error) {
	f.since = since
	return Report{Since: since, Standing: StandingReport{
		Credentials: []StandingCredential{{Database: "orders", Name: "legacy", Why: "can log in with a password"}},
		ScanErrors:  []ScanError{{Database: "billing", Error: "connection refused"}}},
		TimeToRevoke: Durations{Count: 1, P50Seconds: 0.2, TargetSeconds: 900}}, nil
}

// The report is for administrators only; its window is a duration ago or
// an RFC 3339 time, a day by default.
func TestReport(t *testing.T) {
	e := newAdminEnv(t, nil)
	fake := &fakeReporter{}
	e.api.Report = fake
	admin := e.session(t, "ann", "keygate-admins")
	nonAdmin := e.session(t, "bob", "analysts")

	var out Error
	if code, _ := e.call(t, "GET", "/v1/admin/report", nonAdmin, nil, &out); code != http.StatusForbidden || !strings.Contains(out.Error, "not a keygate administrator") {
		t.Fatalf("a non-administrator: %d %q", code, out.Error)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/report", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("no credential: %d", code)
	}

	for q, want := range map[string]time.Time{
		"":          e.now.Add(-24 * time.Hour),
		"?since=2h": e.now.Add(-2 * time.Hour),
		"?since=7d": e.now.Add(-7 * 24 * time.Hour),
		"?since=" + url.QueryEscape("2026-04-30T08:00:00Z"): time.Date(2026, 4, 30, 8, 0, 0, 0, time.UTC),
	} {
		var r Report
		if code, _ := e.call(t, "GET", "/v1/admin/report"+q, admin, nil, &r); code != http.StatusOK {
			t.Fatalf("report%s: %d", q, code)
		}
		if !fake.since.Equal(want) || !r.Since.Equal(want) {
			t.Errorf("report%s asked since %s, want %s", q, fake.since, want)
		}
		if len(r.Standing.Credentials) != 1 || r.Standing.Credentials[0].Name != "legacy" || r.Standing.ScanErrors[0].Database != "billing" || r.TimeToRevoke.Count != 1 {
			t.Errorf("report%s = %+v", q, r)
		}
	}
	// The admin credential reports too.
	e.must(t, http.StatusOK, "GET", "/v1/admin/report", e.admin, nil)

	for _, q := range []string{"?since=yesterday", "?since=-1h", "?since=2099-01-01T00:00:00Z"} {
		if code, _ := e.call(t, "GET", "/v1/admin/report"+q, admin, nil, &out); code != http.StatusBadRequest {
			t.Errorf("report%s: %d %q, want 400", q, code, out.Error)
		}
	}

	e.api.Report = nil
	e.must(t, http.StatusNotImplemented, "GET", "/v1/admin/report", admin, nil)
}
