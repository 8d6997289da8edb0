package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// outgrew compares growth factors: permission sets must grow, and faster
// than people.
func TestOutgrew(t *testing.T) {
	v := func(sets, people int) store.ConfigVersion {
		return store.ConfigVersion{PermissionSets: sets, People: people}
	}
	for _, tc := range []struct {
		base, now store.ConfigVersion
		want      bool
	}{
		{v(10, 100), v(20, 100), true},
		{v(10, 100), v(20, 200), false},
		{v(10, 100), v(21, 200), true},
		{v(10, 100), v(10, 50), false},
		{v(0, 100), v(5, 100), false},
		{v(10, 0), v(11, 0), true},
		{v(10, 100), v(9, 10), false},
	} {
		if got := outgrew(tc.base, tc.now); got != tc.want {
			t.Errorf("outgrew(%+v, %+v) = %v", tc.base, tc.now, got)
		}
	}
}

// The server records its access rules in the config history at start,
// compares them with those of 30 days before, and says in the log, the
// audit log and the metrics that permission sets have sprawled.
func TestSprawlWarning(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(data, StoreFile), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	old := store.ConfigVersion{Loaded: time.Now().Add(-40 * 24 * time.Hour), Digest: "old", Rules: []byte(`{}`), PermissionSets: 1, People: 1}
	if _, err := st.AddConfigVersion(ctx, old); err != nil {
		t.Fatal(err)
	}
	st.Close()

	raw := fmt.Sprintf(`data_dir: %s
listen:
  api: 127.0.0.1:0
  postgres: 127.0.0.1:0
  metrics: 127.0.0.1:0
shutdown_grace: 1s
permission_sets:
  - {name: a, access: ro}
  - {name: b, access: rw}
  - {name: c, access: admin}
`, data)
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, cfg)

	v, err := srv.store.ConfigVersionAt(ctx, time.Now())
	if err != nil || v.PermissionSets != 3 || v.Digest == "old" {
		t.Fatalf("newest config version = %+v, %v", v, err)
	}
	r, err := config.DecodeRules(v.Rules)
	if err != nil || len(r.PermissionSets) != 3 || r.PermissionSets[2].Access != "admin" {
		t.Fatalf("recorded rules = %+v, %v", r, err)
	}
	m := scrapeURL(t, "http://"+srv.MetricsAddr()+"/metrics")
	for series, want := range map[string]float64{
		"keygate_permission_sets":                          3,
		"keygate_assignments":                              0,
		"keygate_access_sprawl_warning":                    1,
		`keygate_audit_events_total{type="access.sprawl"}`: 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if err := srv.events.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := srv.store.ListAudit(ctx, store.AuditQuery{Type: audit.AccessSprawl})
	if err != nil || len(events) != 1 {
		t.Fatalf("access.sprawl events: %+v, %v", events, err)
	}
}
