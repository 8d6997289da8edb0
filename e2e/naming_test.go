package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// namingConfig adds the group naming rule to the common config,
// with orders in prod and billing in dev.
var namingConfig = serverOptions{
	billingTags:  "{environment: dev}",
	extraConfig:  "group_naming:\n  pattern: kg-{environment}-{permission_set}\n",
	stopWithTest: true,
}

// scimGroup is the body of a SCIM group with the given members' ids.
func scimGroup(name string, members ...string) string {
	var m []string
	for _, id := range members {
		m = append(m, `{"value": "`+id+`"}`)
	}
	return `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "` + name + `", "members": [` + strings.Join(m, ", ") + `]}`
}

// Groups named by the rule grant as an identity provider pushes them,
// with no edit of the config and no reload: the group gives its permission
// set on the databases of its environment. Renaming or deleting it over
// SCIM takes the access away, live sessions included; groups that break
// the convention are listed as findings.
func TestGroupNaming(t *testing.T) {
	s := startServerWith(t, "naming", namingConfig)
	c := s.scimClient(t, "okta-naming")
	alice := provision(c, "alice", "prod")
	// Signed in before the group exists, so that the token request comes
	// straight after the push.
	s.session(t, "alice")

	gid := c.must(201, "POST", "/Groups", scimGroup("kg-prod-db-readonly", alice))["id"].(string)
	orders := s.token(t, "alice", "orders")
	mustConnect(t, s, "alice", "orders", orders)
	mustRefuse(t, s, "alice", "billing", "in a prod group")
	if r := s.tokenResult(t, "alice", "orders", "--access", "rw"); r.code == 0 {
		t.Fatal("a read-only group gave a read-write token")
	}

	t.Run("explain", func(t *testing.T) {
		verdict, reason := explainRO(t, s, "alice", "orders")
		if verdict != "allow" {
			t.Fatalf("explain for alice on orders: %s %s", verdict, reason)
		}
		mustContain(t, "explain", reason, "alice is in kg-prod-db-readonly → db-readonly (ro) on orders (environment=prod)")
		var ex api.Explanation
		if err := json.Unmarshal([]byte(s.kg(t, 0, "access", "explain", "--user", "alice", "--db", "orders", "--access", "ro", "--json")), &ex); err != nil {
			t.Fatal(err)
		}
		if d := ex.Decisions[0]; !d.Allowed || d.Group != "kg-prod-db-readonly" || d.PermissionSet != "db-readonly" || d.Policy != "group_naming[kg-prod-db-readonly]" {
			t.Fatalf("explain --json: %+v", d)
		}
	})

	t.Run("rename ends the session", func(t *testing.T) {
		sl := s.startSleeper(t, "alice", "orders", orders, "naming-rename")
		c.must(200, "PATCH", "/Groups/"+gid, `{`+patchOp+`, "Operations": [{"op": "replace", "path": "displayName", "value": "kg-dev-db-readonly"}]}`)
		sl.endedWithin(t, "the SCIM rename's response", time.Now(), time.Second, "access revoked")
		mustRefuse(t, s, "alice", "orders", "after the rename to a dev group")
		mustConnect(t, s, "alice", "billing", s.token(t, "alice", "billing"))
	})

	t.Run("delete ends the session", func(t *testing.T) {
		sl := s.startSleeper(t, "alice", "billing", s.token(t, "alice", "billing"), "naming-delete")
		c.must(204, "DELETE", "/Groups/"+gid, "")
		sl.endedWithin(t, "the SCIM delete's response", time.Now(), time.Second, "access revoked")
		mustRefuse(t, s, "alice", "billing", "after the group was deleted")
	})

	t.Run("findings", func(t *testing.T) {
		c.must(201, "POST", "/Groups", scimGroup("marketing"))
		c.must(201, "POST", "/Groups", scimGroup("kg-prod-db-nosuch"))
		c.must(201, "POST", "/Groups", scimGroup("kg-dev-db-readwrite"))
		out := s.kg(t, 0, "access", "findings")
		mustContain(t, "access findings", out, "group naming rule kg-{environment}-{permission_set}: 3 groups, 1 assigned, 2 findings")
		var marketing string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "marketing ") {
				marketing = l
			}
		}
		mustContain(t, "the line for marketing", marketing, "no_match")
		var f api.AccessFindings
		if err := json.Unmarshal([]byte(s.kg(t, 0, "access", "findings", "--json")), &f); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, x := range f.Findings {
			got[x.Group] = x.Kind
		}
		if len(got) != 2 || got["marketing"] != "no_match" || got["kg-prod-db-nosuch"] != "unknown_permission_set" {
			t.Fatalf("access findings --json: %+v", f)
		}
	})
}
