package authz

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store/sqlite"
)

// BenchmarkAuthorize measures one live-state decision, which the gateway
// makes twice per connection.
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "keygate.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g, _ := st.CreateGroup(ctx, identity.Group{Name: "analysts"})
	for i := range 1000 {
		u, _ := st.CreateUser(ctx, identity.User{UserName: fmt.Sprintf("user%d", i), Active: true})
		st.AddMember(ctx, g.ID, u.ID, "bench")
	}
	policy, _ := access.NewPolicy([]access.PermissionSet{{Name: "ro", Level: access.ReadOnly}}, []access.Assignment{{Group: "analysts", PermissionSet: "ro", Databases: []string{"orders"}}})
	a := New(st, policy, []access.Database{{Name: "orders"}}, nil)
	for i := 0; b.Loop(); i++ {
		d, err := a.Authorize(ctx, Request{User: fmt.Sprintf("user%d", i%1000), Database: "orders", Level: access.ReadOnly})
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
	}
}
