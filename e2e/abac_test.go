package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// abacConfig grants staff read-only access on every database whose
// environment is the person's own, and keeps contractors off production
// whatever else they hold. The assignment on billing names it rather than
// its tags, so that one grant is chosen by tags and the other by name.
var abacConfig = serverOptions{
	billingTags: "{environment: dev}",
	permissionSets: `  - name: env-readonly
    description: Read-only on databases of the person's own environment
    access: ro
    conditions:
      - database.environment == person.environment
`,
	assignments: `  - group: staff
    permission_set: env-readonly
    database_tags: {environment: prod}
  - group: staff
    permission_set: env-readonly
    databases: [billing]
`,
	extraConfig: `deny:
  - description: Contractors never reach production
    group: contractors
    database_tags: {environment: prod}
`,
	stopWithTest: true,
}

// envCondition is the condition as the config writes it and as every
// refusal it causes names it.
const envCondition = "database.environment == person.environment"

// scimKeygateUser is the schema of the SCIM extension whose attributes
// become principal tags.
const scimKeygateUser = "urn:ietf:params:scim:schemas:extension:keygate:2.0:User"

// provision creates a person through SCIM with an environment tag and
// returns their SCIM id.
func provision(c *scimClient, name, environment string) string {
	c.t.Helper()
	body := `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "` + scimKeygateUser + `"], "userName": "` + name + `", "active": true,
		"` + scimKeygateUser + `": {"environment": "` + environment + `"}}`
	return c.must(201, "POST", "/Users", body)["id"].(string)
}

// setEnvironment replaces a person's environment tag as an identity
// provider does when the directory attribute behind it changes.
func setEnvironment(c *scimClient, id, environment string) {
	c.t.Helper()
	c.must(200, "PATCH", "/Users/"+id, `{`+patchOp+`, "Operations": [{"op": "replace", "path": "`+scimKeygateUser+`:environment", "value": "`+environment+`"}]}`)
}

// explainRO runs `keygate access explain --access ro` and returns the
// verdict and reason of the one line it prints.
func explainRO(t *testing.T, s *kgServer, user, db string) (verdict, reason string) {
	t.Helper()
	out := strings.TrimSpace(s.kg(t, 0, "access", "explain", "--user", user, "--db", db, "--access", "ro"))
	f := strings.Fields(out)
	if strings.Contains(out, "\n") || len(f) < 3 || f[0] != "ro" {
		t.Fatalf("explain --access ro printed %q, want one line for ro", out)
	}
	return f[1], strings.Join(f[2:], " ")
}

// mustConnect runs a query through the gateway and fails unless it
// answers with the two orders the sample schema holds.
func mustConnect(t *testing.T, s *kgServer, user, db, token string) {
	t.Helper()
	r := s.psql(t, s.connString(user, db), token, "SELECT count(*) FROM orders")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
		t.Fatalf("%s on %s: exit %d, %q %s", user, db, r.code, r.stdout, r.stderr)
	}
}

// mustRefuse fails unless user is refused a token for db, and returns why.
func mustRefuse(t *testing.T, s *kgServer, user, db, why string) string {
	t.Helper()
	r := s.tokenResult(t, user, db)
	if r.code == 0 {
		t.Fatalf("%s got a token for %s %s", user, db, why)
	}
	return r.stderr
}

// Attribute-based access end to end: principal tags pushed over SCIM decide
// who reaches which database through a permission set's condition, a
// change to a tag takes effect at once in both directions (new tokens and
// live sessions), and a deny rule wins over a grant.
func TestABAC(t *testing.T) {
	s := startServerWith(t, "abac", abacConfig)
	c := s.scimClient(t, "okta-abac")
	alice := provision(c, "alice", "prod")
	bob := provision(c, "bob", "dev")
	carol := provision(c, "carol", "prod")
	members := func(ids ...string) string {
		var m []string
		for _, id := range ids {
			m = append(m, `{"value": "`+id+`"}`)
		}
		return `[` + strings.Join(m, ", ") + `]`
	}
	c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "staff", "members": `+members(alice, bob, carol)+`}`)
	contractors := c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "contractors", "members": `+members(carol)+`}`)["id"].(string)

	t.Run("condition", func(t *testing.T) {
		mustConnect(t, s, "alice", "orders", s.token(t, "alice", "orders"))
		refusal := mustRefuse(t, s, "bob", "orders", "with environment=dev")
		verdict, explain := explainRO(t, s, "bob", "orders")
		if verdict != "deny" {
			t.Fatalf("explain for bob on orders: %s %s", verdict, explain)
		}
		for what, got := range map[string]string{"token refusal": refusal, "explain": explain} {
			mustContain(t, what, got, "env-readonly")
			mustContain(t, what, got, envCondition)
			mustContain(t, what, got, "orders has environment=prod")
			mustContain(t, what, got, "bob has environment=dev")
		}
		// The same grant reaches bob's own environment: the condition
		// compares tags rather than refusing everyone.
		mustConnect(t, s, "bob", "billing", s.token(t, "bob", "billing"))
		mustRefuse(t, s, "alice", "billing", "with environment=prod")
	})

	t.Run("tag change grants at once", func(t *testing.T) {
		setEnvironment(c, bob, "prod")
		mustConnect(t, s, "bob", "orders", s.token(t, "bob", "orders"))
		if verdict, explain := explainRO(t, s, "bob", "orders"); verdict != "allow" || !strings.Contains(explain, "bob has environment=prod") {
			t.Fatalf("explain for bob on orders after the PATCH: %s %s", verdict, explain)
		}
		mustRefuse(t, s, "bob", "billing", "after moving to prod")
	})

	t.Run("tag change ends live session", func(t *testing.T) {
		sl := s.startSleeper(t, "alice", "orders", s.token(t, "alice", "orders"), "abac-alice")
		setEnvironment(c, alice, "dev")
		sl.endedWithin(t, "the SCIM PATCH's response", time.Now(), time.Second, "access revoked")
		mustContain(t, "psql error", sl.stderr.String(), envCondition)
		var revoked []api.AuditEvent
		for _, e := range s.audit(t, "--user", "alice", "--type", "session.end") {
			if strings.Contains(e.Reason, "access revoked") {
				revoked = append(revoked, e)
			}
		}
		if len(revoked) != 1 || revoked[0].Database != "orders" || !strings.Contains(revoked[0].Reason, "alice has environment=dev") {
			t.Fatalf("session.end events for the revocation: %+v", revoked)
		}
		refusal := mustRefuse(t, s, "alice", "orders", "after moving to dev")
		mustContain(t, "token refusal", refusal, "alice has environment=dev")
		s.token(t, "alice", "billing")
	})

	t.Run("deny wins", func(t *testing.T) {
		const rule = "Contractors never reach production"
		mustContain(t, "token refusal", mustRefuse(t, s, "carol", "orders", "as a contractor"), rule)
		verdict, explain := explainRO(t, s, "carol", "orders")
		if verdict != "deny" {
			t.Fatalf("explain for carol on orders: %s %s", verdict, explain)
		}
		mustContain(t, "explain", explain, rule)
		mustContain(t, "explain", explain, "carol is in contractors")
		var ex api.Explanation
		if err := json.Unmarshal([]byte(s.kg(t, 0, "access", "explain", "--user", "carol", "--db", "orders", "--access", "ro", "--json")), &ex); err != nil {
			t.Fatal(err)
		}
		if d := ex.Decisions[0]; d.Allowed || d.Deny != rule || !strings.HasPrefix(d.Policy, "deny[") {
			t.Fatalf("explain --json names the deny rule as %q (policy %q)", d.Deny, d.Policy)
		}
		c.must(200, "PATCH", "/Groups/"+contractors, `{`+patchOp+`, "Operations": [{"op": "Remove", "path": "members[value eq \"`+carol+`\"]"}]}`)
		mustConnect(t, s, "carol", "orders", s.token(t, "carol", "orders"))
	})
}
