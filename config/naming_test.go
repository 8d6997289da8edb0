package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

// namingConfig is abacConfig with the naming rule.
const namingConfig = abacConfig + `group_naming:
  pattern: kg-{environment}-{permission_set}
`

func TestGroupNamingParses(t *testing.T) {
	c := mustParse(t, namingConfig)
	if c.GroupNaming.Pattern != "kg-{environment}-{permission_set}" || c.GroupPattern() == nil || c.GroupPattern().String() != c.GroupNaming.Pattern {
		t.Fatalf("GroupNaming = %+v, pattern %v", c.GroupNaming, c.GroupPattern())
	}
	if mustParse(t, abacConfig).GroupPattern() != nil {
		t.Error("a config without group_naming has a naming rule")
	}
	// A pattern that starts with a placeholder must be quoted in YAML.
	c = mustParse(t, abacConfig+"group_naming:\n  pattern: \"{permission_set}@{environment}\"\n")
	if c.GroupPattern() == nil || !reflect.DeepEqual(c.GroupPattern().TagKeys(), []string{"environment"}) {
		t.Errorf("quoted pattern: %v", c.GroupPattern())
	}
}

func TestGroupNamingErrors(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, message string
		// atLine is the (unique) text whose first line the error names.
		atLine string
	}{
		{"empty", "group_naming:\n", "group_naming.pattern is required: a pattern such as kg-{environment}-{permission_set}", "group_naming:"},
		{"empty pattern", "group_naming:\n  pattern: \"\"\n", "group_naming.pattern is required", "group_naming:"},
		{"no permission set", "group_naming:\n  pattern: kg-{environment}\n",
			`group_naming.pattern "kg-{environment}": column 1: the pattern has no {permission_set}`, "  pattern:"},
		{"placeholders touch", "group_naming:\n  pattern: kg-{environment}{permission_set}\n",
			`group_naming.pattern "kg-{environment}{permission_set}": column 17: {permission_set} follows {environment} with nothing between: separate them with literal text, as in {environment}-{permission_set}`, "  pattern:"},
		{"unknown tag", "group_naming:\n  pattern: kg-{envirnoment}-{permission_set}\n",
			`group_naming.pattern "kg-{envirnoment}-{permission_set}": {envirnoment} names a database tag, but no database has a tag "envirnoment"`, "  pattern:"},
		{"unclosed", "group_naming:\n  pattern: kg-{environment-{permission_set}\n",
			`group_naming.pattern "kg-{environment-{permission_set}": column 4: { is not closed`, "  pattern:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := abacConfig + tt.yaml
			msg := parseErr(t, raw)
			want := fmt.Sprintf("%s:%d: %s", testPath, lineOf(t, raw, tt.atLine), tt.message)
			if !strings.Contains(msg, want) {
				t.Errorf("error\n  %q\nwant it to contain\n  %q", msg, want)
			}
		})
	}
	msg := parseErr(t, abacConfig+"group_naming:\n  patern: kg-{environment}-{permission_set}\n")
	if want := fmt.Sprintf("%s:%d: unknown key \"patern\"; did you mean \"pattern\"?", testPath, strings.Count(abacConfig, "\n")+2); !strings.Contains(msg, want) {
		t.Errorf("misspelt key: %q, want %q", msg, want)
	}
}

func TestNamedAssignments(t *testing.T) {
	c := mustParse(t, namingConfig)
	groups := []string{"kg-prod-prod-readonly", "kg-dev-db-admin", "marketing", "analysts", "contractors", "kg-prod-nosuch", "kg-qa-db-admin"}
	assigned, findings := c.NamedAssignments(groups)
	want := []access.Assignment{
		{Group: "kg-prod-prod-readonly", PermissionSet: "prod-readonly", DatabaseTags: map[string]string{"environment": "prod"}, ID: "group_naming[kg-prod-prod-readonly]"},
		{Group: "kg-dev-db-admin", PermissionSet: "db-admin", DatabaseTags: map[string]string{"environment": "dev"}, ID: "group_naming[kg-dev-db-admin]"},
	}
	if !reflect.DeepEqual(assigned, want) {
		t.Errorf("assignments =\n%+v\nwant\n%+v", assigned, want)
	}
	// analysts and contractors have rules of their own in the config.
	var got []string
	for _, f := range findings {
		got = append(got, f.Group+" "+string(f.Kind))
	}
	if wantF := []string{"marketing no_match", "kg-prod-nosuch unknown_permission_set", "kg-qa-db-admin unknown_tag_value"}; !reflect.DeepEqual(got, wantF) {
		t.Errorf("findings = %q, want %q", got, wantF)
	}
	if a, f := mustParse(t, abacConfig).NamedAssignments(groups); a != nil || f != nil {
		t.Errorf("without a rule: %v %v", a, f)
	}
}

// The derived assignments take part in the policy with the config's own
// rules: the permission set's conditions and the deny rules apply to them.
func TestPolicyWithNamedAssignments(t *testing.T) {
	c := mustParse(t, namingConfig)
	assigned, _ := c.NamedAssignments([]string{"kg-prod-prod-readonly"})
	p, err := c.Policy(assigned...)
	if err != nil {
		t.Fatal(err)
	}
	orders, _ := c.FindDatabase("orders")
	scratch, _ := c.FindDatabase("scratch")
	eve := identity.Principal{UserName: "eve", Active: true, Groups: []string{"kg-prod-prod-readonly"},
		Attributes: map[string]string{"environment": "prod", "department": "data"}}
	d := p.Decide(eve, orders.AccessDatabase(), access.ReadOnly)
	if !d.Allowed || d.Policy != "group_naming[kg-prod-prod-readonly]" || !strings.HasPrefix(d.Reason, "eve is in kg-prod-prod-readonly → prod-readonly (ro) on orders") {
		t.Errorf("derived grant: %+v", d)
	}
	if d := p.Decide(eve, scratch.AccessDatabase(), access.ReadOnly); d.Allowed {
		t.Errorf("derived grant reaches the dev database: %s", d.Reason)
	}
	eve.Attributes["department"] = "sales"
	if d := p.Decide(eve, orders.AccessDatabase(), access.ReadOnly); d.Allowed || d.Condition != "person.department in [engineering, data]" {
		t.Errorf("the permission set's condition does not apply to a derived grant: %+v", d)
	}
	if p, err := c.Policy(); err != nil || p.Decide(eve, orders.AccessDatabase(), access.ReadOnly).Allowed {
		t.Errorf("the config alone grants the named group: %v", err)
	}
}
