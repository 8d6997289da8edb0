package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

// abacConfig uses every access key. Line numbers matter: tests point at
// them.
const abacConfig = `data_dir: ./data
databases:
  - name: orders
    address: pg:5432
    tags: {environment: prod, tier: gold}
    admin: {user: a, password_env: P}
  - name: scratch
    address: pg:5432
    tags: {environment: dev}
    admin: {user: a, password_env: P}
permission_sets:
  - name: prod-readonly
    description: Read-only on databases of the person's own environment
    access: ro
    token_ttl: 15m
    session_duration: 8h
    require_mfa: false
    conditions:
      - database.environment == person.environment
      - person.department in [engineering, data]
      - database.tier != "silver"
  - name: db-admin
    access: admin
    require_mfa: true
assignments:
  - group: analysts
    permission_set: prod-readonly
    databases: [orders]
  - group: engineers
    permission_set: prod-readonly
    database_tags: {environment: prod}
  - group: dba
    permission_set: db-admin
    databases: ["*"]
deny:
  - description: Contractors never reach production
    group: contractors
    database_tags: {environment: prod}
    access: [rw, admin]
  - description: Nobody without a department
    databases: ["*"]
    conditions:
      - not has person.department
`

func TestAccessKeysParse(t *testing.T) {
	c := mustParse(t, abacConfig)
	wantSets := []PermissionSet{
		{
			Name: "prod-readonly", Description: "Read-only on databases of the person's own environment", Access: "ro",
			TokenTTL: Duration(15 * time.Minute), SessionDuration: Duration(8 * time.Hour),
			Conditions: []string{"database.environment == person.environment", "person.department in [engineering, data]", `database.tier != "silver"`},
		},
		{Name: "db-admin", Access: "admin", TokenTTL: Duration(access.DefaultTokenTTL), RequireMFA: true},
	}
	if !reflect.DeepEqual(c.PermissionSets, wantSets) {
		t.Errorf("PermissionSets =\n%+v\nwant\n%+v", c.PermissionSets, wantSets)
	}
	if got := c.Assignments[1].DatabaseTags; !reflect.DeepEqual(got, map[string]string{"environment": "prod"}) {
		t.Errorf("database_tags = %v", got)
	}
	wantDeny := []Deny{
		{Description: "Contractors never reach production", Group: "contractors", DatabaseTags: map[string]string{"environment": "prod"}, Access: []string{"rw", "admin"}},
		{Description: "Nobody without a department", Databases: []string{"*"}, Conditions: []string{"not has person.department"}},
	}
	if !reflect.DeepEqual(c.Deny, wantDeny) {
		t.Errorf("Deny =\n%+v\nwant\n%+v", c.Deny, wantDeny)
	}

	p, err := c.Policy()
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	orders, _ := c.FindDatabase("orders")
	scratch, _ := c.FindDatabase("scratch")
	ann := identity.Principal{UserName: "ann", Active: true, Groups: []string{"engineers"}, Attributes: map[string]string{"environment": "prod", "department": "data"}}
	d := p.Decide(ann, orders.AccessDatabase(), access.ReadOnly)
	if !d.Allowed || d.Grant.PermissionSet.SessionDuration != 8*time.Hour || d.Grant.PermissionSet.Description == "" || d.Policy != "assignments[1]" {
		t.Errorf("ann on orders: %+v", d)
	}
	if d := p.Decide(ann, scratch.AccessDatabase(), access.ReadOnly); d.Allowed {
		t.Errorf("ann allowed on scratch through a prod selector: %s", d.Reason)
	}
	dan := identity.Principal{UserName: "dan", Active: true, Groups: []string{"dba", "contractors"}, Attributes: map[string]string{"department": "dba"}, MFA: true}
	if d := p.Decide(dan, orders.AccessDatabase(), access.ReadOnly); !d.Allowed {
		t.Errorf("the contractor deny refused ro: %s", d.Reason)
	}
	if d := p.Decide(dan, orders.AccessDatabase(), access.ReadWrite); d.Allowed || d.Deny != "Contractors never reach production" {
		t.Errorf("the contractor deny did not refuse rw: %+v", d)
	}
	dan.Attributes = nil
	if d := p.Decide(dan, scratch.AccessDatabase(), access.ReadOnly); d.Allowed || d.Deny != "Nobody without a department" {
		t.Errorf("not has person.department: %+v", d)
	}
}

func TestAccessKeyErrors(t *testing.T) {
	tests := []struct {
		name    string
		old     string // text in abacConfig to replace
		new     string
		atLine  string // the error is at the first line of this (unique) text
		message string
	}{
		{
			name: "condition does not parse",
			old:  "      - person.department in [engineering, data]", new: "      - person.department = data", atLine: "person.department = data",
			message: `permission set "prod-readonly": condition "person.department = data": column 19: use == to compare`,
		},
		{
			name: "condition reads a database tag no database has",
			old:  "      - database.tier != \"silver\"", new: "      - database.teir != silver", atLine: "database.teir",
			message: `permission set "prod-readonly": condition "database.teir != silver" reads database.teir, but no database has a tag "teir"`,
		},
		{
			name: "session_duration too long",
			old:  "session_duration: 8h", new: "session_duration: 25h", atLine: "session_duration: 25h",
			message: `permission set "prod-readonly": session_duration 25h0m0s must be between 1m0s and 24h0m0s`,
		},
		{
			name: "bad session_duration",
			old:  "session_duration: 8h", new: "session_duration: all day", atLine: "session_duration: all day",
			message: `invalid duration "all day"`,
		},
		{
			name: "selector on an unknown tag",
			old:  "    database_tags: {environment: prod}\n  - group: dba", new: "    database_tags: {envrionment: prod}\n  - group: dba", atLine: "database_tags: {envrionment: prod}",
			message: `assignment for group "engineers" selects databases by tag "envrionment", but no database has that tag`,
		},
		{
			name: "databases and database_tags",
			old:  "    databases: [orders]\n", new: "    databases: [orders]\n    database_tags: {tier: gold}\n", atLine: "database_tags: {tier: gold}",
			message: `assignment for group "analysts" gives both databases and database_tags: use one`,
		},
		{
			name: "assignment without a target",
			old:  "    databases: [orders]\n", new: "", atLine: "  - group: analysts",
			message: `assignment for group "analysts" lists no databases: name them, use "*" for all, or select them with database_tags`,
		},
		{
			name: "deny without a description",
			old:  "  - description: Contractors never reach production\n    group", new: "  - group", atLine: "  - group: contractors",
			message: `deny rule without a description`,
		},
		{
			name: "deny without databases",
			old:  "    databases: [\"*\"]\n    conditions:", new: "    conditions:", atLine: "  - description: Nobody without",
			message: `deny rule "Nobody without a department" lists no databases`,
		},
		{
			name: "deny names an unknown database",
			old:  "    databases: [\"*\"]\n    conditions:", new: "    databases: [ledger]\n    conditions:", atLine: "databases: [ledger]",
			message: `deny rule "Nobody without a department" names database "ledger", which is not defined under databases`,
		},
		{
			name: "deny with a bad level",
			old:  "access: [rw, admin]", new: "access: [rw, write]", atLine: "access: [rw, write]",
			message: `deny rule "Contractors never reach production": unknown access level "write": use ro, rw or admin`,
		},
		{
			name: "deny condition does not parse",
			old:  "      - not has person.department", new: "      - has department", atLine: "has department",
			message: `deny rule "Nobody without a department": condition "has department": column 5: has needs database.TAG or person.TAG`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(abacConfig, tt.old) {
				t.Fatalf("test bug: %q not in the config", tt.old)
			}
			raw := strings.Replace(abacConfig, tt.old, tt.new, 1)
			msg := parseErr(t, raw)
			idx := strings.Index(raw, tt.atLine)
			if idx < 0 {
				t.Fatalf("test bug: %q not in the config", tt.atLine)
			}
			line := strings.Count(raw[:idx], "\n") + 1
			want := fmt.Sprintf("%s:%d: %s", testPath, line, tt.message)
			if tt.name == "bad session_duration" {
				want = fmt.Sprintf(":%d: %s", line, tt.message)
			}
			if !strings.Contains(msg, want) {
				t.Errorf("error\n  %q\nwant it to contain\n  %q", msg, want)
			}
		})
	}
}

func TestAccessUnknownKeys(t *testing.T) {
	for _, tt := range []struct{ old, new, key string }{
		{"    require_mfa: false\n", "    require_mfa: false\n    condition: has person.x\n", "condition"},
		{"    access: [rw, admin]\n", "    access: [rw, admin]\n    groups: [a]\n", "groups"},
		{"    database_tags: {environment: prod}\n  - group: dba", "    database_tag: {environment: prod}\n  - group: dba", "database_tag"},
	} {
		raw := strings.Replace(abacConfig, tt.old, tt.new, 1)
		msg := parseErr(t, raw)
		want := fmt.Sprintf(":%d: unknown key %q", lineOf(t, raw, tt.key+":"), tt.key)
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

func writePolicyFile(t *testing.T, text string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPolicyFile(t *testing.T) {
	dir := writePolicyFile(t, `@id("auditors-read")
permit (principal in Keygate::Group::"auditors", action == Keygate::Action::"ro", resource);

@description("No admin sessions on gold databases")
forbid (principal, action == Keygate::Action::"admin", resource)
when { resource.hasTag("tier") && resource.getTag("tier") == "gold" };
`)
	path := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(path, []byte(abacConfig+"policy_file: policy.cedar\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, err := c.Policy()
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	orders, _ := c.FindDatabase("orders")
	aud := identity.Principal{UserName: "aud", Active: true, Groups: []string{"auditors"}, Attributes: map[string]string{"department": "audit"}}
	if d := p.Decide(aud, orders.AccessDatabase(), access.ReadOnly); !d.Allowed || d.Policy != "auditors-read" {
		t.Errorf("the file's permit: %+v", d)
	}
	dba := identity.Principal{UserName: "dba", Active: true, Groups: []string{"dba"}, Attributes: map[string]string{"department": "dba"}, MFA: true}
	if d := p.Decide(dba, orders.AccessDatabase(), access.Admin); d.Allowed || d.Deny != "No admin sessions on gold databases" {
		t.Errorf("the file's forbid: %+v", d)
	}
}

func TestPolicyFileErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"syntax", "permit(principal, action, resource);\nforbid(principal action, resource);\n", "policy.cedar:2:24: "},
		{"validation", "permit(principal, action, resource)\nwhen { principal.department == \"x\" };\n", "policy.cedar:1: for policy `policy.cedar:1`, attribute `department` on entity type `Keygate::Person` not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePolicyFile(t, tt.text)
			raw := abacConfig + "policy_file: policy.cedar\n"
			_, err := Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
			line := lineOf(t, raw, "policy_file:")
			want := fmt.Sprintf("keygate.yaml:%d: policy_file: %s", line, filepath.Join(dir, tt.want))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Parse error = %v\nwant it to contain %q", err, want)
			}
		})
	}
	_, err := Parse(testPath, []byte(abacConfig+"policy_file: /nonexistent/policy.cedar\n"))
	if err == nil || !strings.Contains(err.Error(), "policy_file: read Cedar policies: open /nonexistent/policy.cedar") {
		t.Errorf("missing policy file: %v", err)
	}
}
