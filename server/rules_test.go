package server

import (
	"context"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

// The access rules listed are those decisions use: the config's, with the
// group naming rule's assignment for a group as soon as a decision has
// met it.
func TestAccessRulesInForce(t *testing.T) {
	srv, _, _, _ := newNamingServer(t, "kg-{environment}-{permission_set}")
	ctx := context.Background()
	r, err := srv.AccessRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.PermissionSets) != 2 || r.PermissionSets[0].Name != "db-readonly" || r.PermissionSets[0].TokenTTL != "15m" ||
		len(r.Assignments) != 1 || r.Assignments[0].Policy != "assignments[0]" || r.Assignments[0].Access != "rw" ||
		r.GroupPattern != "kg-{environment}-{permission_set}" {
		t.Fatalf("rules: %+v", r)
	}

	alice, err := srv.store.CreateUser(ctx, identity.User{UserName: "alice", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := srv.store.CreateGroup(ctx, identity.Group{Name: "kg-prod-db-readonly"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.store.AddMember(ctx, g.ID, alice.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := allowed(t, srv, "alice", "orders", access.ReadOnly); !d.Allowed {
		t.Fatalf("ro on orders: %s", d.Reason)
	}
	if r, err = srv.AccessRules(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.Assignments) != 2 {
		t.Fatalf("assignments after kg-prod-db-readonly: %+v", r.Assignments)
	}
	if a := r.Assignments[1]; a.Group != "kg-prod-db-readonly" || a.PermissionSet != "db-readonly" || a.Access != "ro" ||
		a.DatabaseTags["environment"] != "prod" || a.Policy != "group_naming[kg-prod-db-readonly]" {
		t.Errorf("the naming rule's assignment: %+v", a)
	}
}
