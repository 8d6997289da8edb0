package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/upstream"
)

// scannedDatabase is an upstream whose scan for standing credentials
// answers found, or fails with err.
type scannedDatabase struct {
	upstream.Database
	found []upstream.Standing
	err   error
}

func (d scannedDatabase) Standing(context.Context) ([]upstream.Standing, error) {
	return d.found, d.err
}

// lockedBuffer is a log destination safe for the scans' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The report reads credential age and time-to-revoke from the audit
// events in its window, over more than one page of them, with
// nearest-rank percentiles; lists each database's standing credentials;
// and names a database whose scan failed without failing the report.
func TestReport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, StoreFile), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var clock time.Time
	log, err := audit.Open(ctx, st, slog.New(slog.DiscardHandler), func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })

	now := time.Now()
	// Before the window: an age that would top every figure.
	clock = now.Add(-48 * time.Hour)
	log.Record(audit.Event{Type: audit.SessionStart, User: "old", Detail: map[string]any{"token_age_ms": int64(10 * time.Hour / time.Millisecond)}})
	log.Record(audit.Event{Type: audit.SessionEnd, User: "old", Detail: map[string]any{"revoked_after_ms": int64(10 * time.Hour / time.Millisecond)}})
	clock = now.Add(-time.Hour)
	// 1500 sessions, more than a page, aged 3s, 6s, … 4500s.
	for i := 1; i <= 1500; i++ {
		log.Record(audit.Event{Type: audit.SessionStart, User: "alice", Detail: map[string]any{"token_age_ms": int64(i) * 3000}})
	}
	log.Record(audit.Event{Type: audit.SessionStart, User: "nobody", Detail: map[string]any{"upstream_role": "kg_nobody"}})
	for _, ms := range []int64{3000, 100, 200} {
		log.Record(audit.Event{Type: audit.SessionEnd, User: "bob", Reason: "access revoked", Detail: map[string]any{"revoked_after_ms": ms}})
	}
	log.Record(audit.Event{Type: audit.SessionEnd, User: "bob", Reason: "client closed", Detail: map[string]any{"duration_ms": 5}})
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte("data_dir: ./data\nreport: {revocation_target: 2s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	srv := &Server{cfg: cfg, store: st, log: slog.New(slog.NewTextHandler(&logs, nil)), rules: accessRules{cfg: cfg},
		upstreams: Upstreams{Databases: map[string]upstream.Database{
			"orders": scannedDatabase{found: []upstream.Standing{
				{Name: "legacy", Why: "can log in with a password"},
				{Name: "kg_alice", Why: "has LOGIN outside a login window", Managed: true},
			}},
			"billing":   scannedDatabase{err: errors.New("connection refused")},
			"analytics": scannedDatabase{},
		}}}
	srv.sprawl.Store(&metrics.SprawlState{PermissionSets: 4, Assignments: 5, Grants: 120})

	r, err := srv.Report(ctx, now.Add(-24*time.Hour))
	if err != nil {
		t.Fatalf("a failing scan failed the report: %v", err)
	}
	want := []api.StandingCredential{
		{Database: "orders", Name: "kg_alice", Why: "has LOGIN outside a login window", Managed: true},
		{Database: "orders", Name: "legacy", Why: "can log in with a password"},
	}
	if len(r.Standing.Credentials) != len(want) || r.Standing.Credentials[0] != want[0] || r.Standing.Credentials[1] != want[1] || r.Standing.Target != 0 {
		t.Errorf("standing credentials = %+v, want %+v", r.Standing.Credentials, want)
	}
	if len(r.Standing.ScanErrors) != 1 || r.Standing.ScanErrors[0].Database != "billing" || !strings.Contains(r.Standing.ScanErrors[0].Error, "connection refused") {
		t.Errorf("scan errors = %+v", r.Standing.ScanErrors)
	}
	if !strings.Contains(logs.String(), "database=billing") {
		t.Errorf("the failed scan is not logged:\n%s", logs.String())
	}
	// The gauge has the databases that were scanned, and not billing.
	if got := srv.standingCounts(); len(got) != 2 || got["orders"] != 2 || got["analytics"] != 0 {
		t.Errorf("standing counts = %v", got)
	}

	// Nearest rank: p50 is the 750th of 1500, p99 the 1485th.
	if got, want := r.CredentialAge, (api.Durations{Count: 1500, P50Seconds: 2250, P99Seconds: 4455, MaxSeconds: 4500, TargetSeconds: 3600, OverTarget: 300}); got != want {
		t.Errorf("credential age = %+v, want %+v", got, want)
	}
	if got, want := r.TimeToRevoke, (api.Durations{Count: 3, P50Seconds: 0.2, P99Seconds: 3, MaxSeconds: 3, TargetSeconds: 2, OverTarget: 1}); got != want {
		t.Errorf("time to revoke = %+v, want %+v", got, want)
	}
	if r.Sprawl != (api.Sprawl{PermissionSets: 4, Assignments: 5, Grants: 120}) || r.Findings.Findings == nil {
		t.Errorf("sprawl = %+v, findings = %+v", r.Sprawl, r.Findings)
	}

	// A window with nothing in it counts nothing, and keeps the target.
	r, err = srv.Report(ctx, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r.CredentialAge != (api.Durations{TargetSeconds: 3600}) || r.TimeToRevoke != (api.Durations{TargetSeconds: 2}) {
		t.Errorf("empty window: %+v, %+v", r.CredentialAge, r.TimeToRevoke)
	}

	// A scan that succeeds again brings the database's gauge back.
	srv.upstreams.Databases["billing"] = scannedDatabase{}
	srv.scanStanding(ctx)
	if got := srv.standingCounts(); len(got) != 3 || got["billing"] != 0 {
		t.Errorf("standing counts after billing recovered = %v", got)
	}
}

func TestPercentile(t *testing.T) {
	ds := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{ds(7), 50, 7 * time.Millisecond},
		{ds(7), 99, 7 * time.Millisecond},
		{ds(1, 2), 50, time.Millisecond},
		{ds(1, 2), 99, 2 * time.Millisecond},
		{ds(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ds(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("p%d of %v = %s, want %s", tc.p, tc.sorted, got, tc.want)
		}
	}
}

// The revocation target takes a restart: the gateway reads it without a
// lock, and the report measures against the gateway's.
func TestRevocationTargetNeedsRestart(t *testing.T) {
	parse := func(raw string) *config.Config {
		t.Helper()
		c, err := config.Parse(filepath.Join(t.TempDir(), "keygate.yaml"), []byte("data_dir: ./data\n"+raw))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse("")
	if got := needsRestart(running, parse("report: {revocation_target: 15m}\n")); len(got) != 0 {
		t.Errorf("the default written out: %v", got)
	}
	if got := needsRestart(running, parse("report: {revocation_target: 5m}\n")); !slices.Equal(got, []string{"report"}) {
		t.Errorf("a new target: %v", got)
	}
	// Where the state lives changes only with a restart.
	if got := needsRestart(running, parse("state: {postgres_url_env: KEYGATE_STATE_URL, secrets_key_env: KEYGATE_SECRETS_KEY}\n")); !slices.Equal(got, []string{"state"}) {
		t.Errorf("a state database named: %v", got)
	}
}
