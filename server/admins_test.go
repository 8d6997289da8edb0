package server

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// administrators is applied on reload: the API sees the new groups on
// its next request, the reload's audit event names the groups before and
// after, and the config history keeps them with the access rules.
func TestReloadAppliesAdministrators(t *testing.T) {
	srv, path, _, _ := newNamingServer(t, "kg-{environment}-{permission_set}")
	ctx := context.Background()
	if a := srv.administrators(); a.Configured() {
		t.Fatalf("administrators before any are configured: %+v", a)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, "administrators:\n  groups: [keygate-admins]\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if a := srv.administrators(); !slices.Equal(a.Groups, []string{"keygate-admins"}) {
		t.Fatalf("administrators after the reload: %+v", a)
	}
	// A reload that is refused leaves them as they are.
	if err := os.WriteFile(path, append(raw, "administrators:\n  groups: [keygate-admins, keygate-admins]\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Reload(ctx); err == nil {
		t.Fatal("a config naming a group twice in administrators.groups was applied")
	}
	if a := srv.administrators(); !slices.Equal(a.Groups, []string{"keygate-admins"}) {
		t.Fatalf("administrators after a refused reload: %+v", a)
	}

	if err := srv.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := srv.store.ListAudit(ctx, store.AuditQuery{Type: audit.ConfigReload})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Fatalf("%d reload events, want 1", len(events))
	}
	var detail struct {
		Administrators []string `json:"administrators"`
		Before         []string `json:"administrators_before"`
	}
	if err := json.Unmarshal(events[0].Detail, &detail); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(detail.Administrators, []string{"keygate-admins"}) || detail.Before == nil || len(detail.Before) != 0 {
		t.Errorf("reload event detail: %s", events[0].Detail)
	}

	v, err := srv.store.ConfigVersionAt(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := config.DecodeRules(v.Rules)
	if err != nil {
		t.Fatal(err)
	}
	if r.Administrators == nil || !slices.Equal(r.Administrators.Groups, []string{"keygate-admins"}) {
		t.Errorf("the config history's rules do not name the administrators: %+v", r.Administrators)
	}
}
