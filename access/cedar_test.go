package access

import (
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// exampleRules uses every kind of rule the config can express.
func exampleRules(t testing.TB) Rules {
	return Rules{
		PermissionSets: []PermissionSet{
			{Name: "prod-readonly", Level: ReadOnly, Conditions: conds(t, "database.environment == person.environment", "person.department in [engineering, data]", "database.tier != gold")},
			{Name: "writer", Level: ReadWrite, RequireMFA: true, Conditions: conds(t, "has person.team", "person.team not in [\"x y\"]", "not has database.frozen")},
			{Name: "admin", Level: Admin},
		},
		Assignments: []Assignment{
			{Group: "analysts", PermissionSet: "prod-readonly", Databases: []string{"orders"}},
			{Group: "engineers", PermissionSet: "prod-readonly", DatabaseTags: map[string]string{"environment": "prod"}},
			{Group: "engineers", PermissionSet: "writer", Databases: []string{"orders", "billing"}},
			{Group: "dba", PermissionSet: "admin", Databases: []string{AllDatabases}},
		},
		Denies: []Deny{
			{Description: "Contractors never reach production", Group: "contractors", DatabaseTags: map[string]string{"environment": "prod"}, Levels: []Level{ReadWrite, Admin}},
			{Description: "Nobody writes to the ledger", Databases: []string{"ledger"}, Levels: []Level{ReadWrite}, Conditions: conds(t, "person.role != auditor")},
		},
	}
}

// TestCompiledPoliciesValidate: every compiled policy passes Cedar's
// validator against CedarSchema, so the compiled Cedar and the documented
// model agree, and no policy can fail at evaluation for a missing tag.
func TestCompiledPoliciesValidate(t *testing.T) {
	p := mustCompile(t, exampleRules(t))
	v := validate.New(resolvedSchema())
	n := 0
	for id, pol := range p.PolicySet().All() {
		n++
		if err := v.Policy(string(id), (*xast.Policy)(pol.AST())); err != nil {
			t.Errorf("%s does not validate: %v\n%s", id, err, pol.MarshalCedar())
		}
	}
	// 1 + 1 + 2 + 3 permits (one per level covered), 2 + 2 forbids.
	if n != 11 {
		t.Errorf("%d policies, want 11", n)
	}
}

// TestCompiledCedarText: the Cedar written out parses back, and reads as
// the model documents it.
func TestCompiledCedarText(t *testing.T) {
	text := string(mustCompile(t, exampleRules(t)).PolicySet().MarshalCedar())
	list, err := cedar.NewPolicyListFromBytes("compiled.cedar", []byte(text))
	if err != nil {
		t.Fatalf("compiled Cedar does not parse: %v\n%s", err, text)
	}
	if len(list) != 11 {
		t.Errorf("%d policies parsed back, want 11", len(list))
	}
	for _, want := range []string{
		`@id("assignments[0]/ro")`,
		`principal in Keygate::Group::"analysts"`,
		`action == Keygate::Action::"ro"`,
		`resource == Keygate::Database::"orders"`,
		`resource is Keygate::Database`,
		`resource.hasTag("environment")`,
		`principal.getTag("environment")`,
		`principal.mfa`,
		`@id("deny[0]/admin")`,
		`@description("Contractors never reach production")`,
		`forbid`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("compiled Cedar lacks %s:\n%s", want, text)
		}
	}
}

const policyFile = `// Extra rules for what the config cannot say.
@id("alice-reads-everything")
permit (principal == Keygate::Person::"alice", action == Keygate::Action::"ro", resource);

@description("No writes to databases marked frozen")
forbid (principal, action in [Keygate::Action::"rw", Keygate::Action::"admin"], resource)
when { resource.hasTag("frozen") };

permit (principal in Keygate::Group::"oncall", action, resource is Keygate::Database)
when { principal.mfa && resource.hasTag("environment") && resource.getTag("environment") like "prod*" };
`

func TestCedarFile(t *testing.T) {
	r := exampleRules(t)
	r.Cedar = []CedarFile{{Name: "/etc/keygate/policy.cedar", Text: []byte(policyFile)}}
	p := mustCompile(t, r)

	alice := personWith("alice", nil)
	d := p.Decide(alice, tagged("scratch"), ReadOnly)
	if !d.Allowed || d.Policy != "alice-reads-everything" || d.Reason != "alice is allowed ro on scratch by policy alice-reads-everything (policy.cedar:2)" {
		t.Errorf("a policy-file permit: %+v", d)
	}
	if d.Grant.Group != "" || d.Grant.PermissionSet.Level != ReadOnly || d.TokenTTL() != DefaultTokenTTL {
		t.Errorf("a policy-file grant: %+v", d.Grant)
	}
	if l, ok := p.LeastLevel(alice, tagged("scratch")); !ok || l != ReadOnly {
		t.Errorf("LeastLevel through a policy-file permit = %q, %v", l, ok)
	}
	if d := p.Decide(alice, tagged("scratch"), ReadWrite); d.Allowed {
		t.Errorf("the permit allowed more than ro: %s", d.Reason)
	}

	dan := personWith("dan", nil, "dba")
	frozen := tagged("archive", "frozen", "yes")
	if d := p.Decide(dan, frozen, ReadOnly); !d.Allowed {
		t.Errorf("the forbid refused ro: %s", d.Reason)
	}
	d = p.Decide(dan, frozen, Admin)
	if d.Allowed || d.Deny != "No writes to databases marked frozen" || d.Policy != "policy.cedar:5" ||
		d.Reason != `"No writes to databases marked frozen" (policy policy.cedar:5) denies dan admin on archive` {
		t.Errorf("a policy-file forbid: %+v", d)
	}

	oncall := personWith("olga", nil, "oncall")
	if d := p.Decide(oncall, tagged("p1", "environment", "production"), Admin); d.Allowed {
		t.Errorf("allowed without MFA: %s", d.Reason)
	}
	oncall.MFA = true
	if d := p.Decide(oncall, tagged("p1", "environment", "production"), Admin); !d.Allowed || d.Policy != "policy.cedar:9" {
		t.Errorf("the oncall permit: %+v", d)
	}
	if d := p.Decide(oncall, tagged("d1", "environment", "dev"), Admin); d.Allowed {
		t.Errorf("the oncall permit matched dev: %s", d.Reason)
	}
}

func TestCedarFileErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"syntax", "permit(principal, action, resource);\n\nforbid(principal action, resource);", "/k/policy.cedar:3:24: "},
		{"unterminated", `permit(principal, action, resource) when { "abc };`, "/k/policy.cedar:1:44: literal not terminated"},
		{"unknown attribute", "permit(principal, action, resource)\n  when { principal.department == \"x\" };", "/k/policy.cedar:1: for policy `policy.cedar:1`, attribute `department` on entity type `Keygate::Person` not found"},
		{"unknown entity type", "forbid(principal in Keygate::Team::\"x\", action, resource);", "unrecognized entity type `Keygate::Team`"},
		{"unknown action", "forbid(principal, action == Keygate::Action::\"write\", resource);", "unrecognized action `Keygate::Action::\"write\"`"},
		{"unguarded tag", "forbid(principal, action, resource) when { resource.getTag(\"env\") == \"prod\" };", "unable to guarantee safety of access to tag"},
		{"context", "forbid(principal, action, resource) when { context.hour > 3 };", "attribute `hour` in context"},
		{"reserved id", "@id(\"deny[0]\") forbid(principal, action, resource);", `/k/policy.cedar:1: @id("deny[0]") is reserved`},
		{"duplicate id", "@id(\"x\") forbid(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);", `/k/policy.cedar:2: policy id "x" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(Rules{Cedar: []CedarFile{{Name: "/k/policy.cedar", Text: []byte(tt.text)}}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Compile(Rules{Cedar: []CedarFile{{Name: "empty.cedar", Text: []byte("// nothing yet\n")}}}); err != nil {
		t.Errorf("an empty policy file: %v", err)
	}
}

// TestIndexScopes: policies from a Cedar file are filed by their scope;
// whatever the scope, the decision is the one over every policy.
func TestIndexScopes(t *testing.T) {
	text := `
permit (principal in Keygate::Group::"g", action in [Keygate::Action::"ro", Keygate::Action::"rw"], resource in Keygate::Database::"a");
permit (principal is Keygate::Person in Keygate::Group::"h", action in Keygate::Action::"admin", resource is Keygate::Database in Keygate::Database::"b");
permit (principal in Keygate::Person::"p", action, resource);
forbid (principal is Keygate::Person, action, resource == Keygate::Database::"c");
permit (principal is Keygate::Person, action, resource) when { resource == Keygate::Database::"d" };
permit (principal, action == Keygate::Action::"ro", resource) when { principal in Keygate::Group::"z" };
`
	p := mustCompile(t, Rules{Cedar: []CedarFile{{Name: "scopes.cedar", Text: []byte(text)}}})
	ps := p.PolicySet()
	for _, u := range []string{"p", "q"} {
		for _, groups := range [][]string{nil, {"g"}, {"h"}, {"z"}, {"g", "h", "z"}} {
			for _, db := range []string{"a", "b", "c", "d"} {
				for _, l := range Levels {
					pr := personWith(u, nil, groups...)
					got := p.Decide(pr, Database{Name: db}, l).Allowed
					want := unionAllows(ps, pr, Database{Name: db}, l)
					if got != want {
						t.Errorf("%s in %v on %s at %s: Decide %v, all policies %v", u, groups, db, l, got, want)
					}
				}
			}
		}
	}
}
