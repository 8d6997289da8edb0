package access

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/identity"
)

func TestParseGroupPattern(t *testing.T) {
	for _, tc := range []struct {
		src  string
		keys []string
	}{
		{"kg-{environment}-{permission_set}", []string{"environment"}},
		{"{permission_set}", nil},
		{"{permission_set}@{environment}", []string{"environment"}},
		{"team {project}/{environment}: {permission_set} (keygate)", []string{"project", "environment"}},
		{"{environment}.{permission_set}.{project}", []string{"environment", "project"}},
	} {
		p, err := ParseGroupPattern(tc.src)
		if err != nil {
			t.Errorf("ParseGroupPattern(%q): %v", tc.src, err)
			continue
		}
		if p.String() != tc.src || !reflect.DeepEqual(p.TagKeys(), tc.keys) {
			t.Errorf("ParseGroupPattern(%q) = %q with keys %q, want keys %q", tc.src, p.String(), p.TagKeys(), tc.keys)
		}
	}
}

func TestParseGroupPatternErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		col  int
		want string
	}{
		{"", 1, "empty"},
		{"kg-{environment}", 1, "no {permission_set}"},
		{"kg-{environment}{permission_set}", 17, "{permission_set} follows {environment} with nothing between"},
		{"{permission_set}{environment}", 17, "nothing between"},
		{"kg-{environment}-{environment}-{permission_set}", 18, "{environment} appears twice (first at column 4)"},
		{"kg-{permission_set}-{permission_set}", 21, "appears twice"},
		{"kg-{}-{permission_set}", 4, "{} names nothing"},
		{"kg-{env ironment}-{permission_set}", 8, `' ' cannot appear in a tag key`},
		{"kg-{env.x}-{permission_set}", 8, `'.' cannot appear`},
		{"kg-{environment-{permission_set}", 4, "{ is not closed"},
		{"kg-{permission_set", 4, "{ is not closed"},
		{"kg}-{permission_set}", 3, "} without a {"},
		{"é-{a}-{permission_set}}", 23, "} without a {"},
		{"kg-\xff{permission_set}", 1, "UTF-8"},
		{strings.Repeat("x", 300) + "{permission_set}", 1, "at most 256 bytes"},
	} {
		_, err := ParseGroupPattern(tc.src)
		var pe *PatternError
		if !errors.As(err, &pe) {
			t.Errorf("ParseGroupPattern(%q) error %v, want a *PatternError", tc.src, err)
			continue
		}
		if pe.Column != tc.col || !strings.Contains(pe.Msg, tc.want) {
			t.Errorf("ParseGroupPattern(%q) = column %d %q, want column %d with %q", tc.src, pe.Column, pe.Msg, tc.col, tc.want)
		}
	}
}

func TestGroupPatternMatch(t *testing.T) {
	type tags = map[string]string
	for _, tc := range []struct {
		pattern, name string
		ok            bool
		set           string
		tags          tags
	}{
		// The pattern: permission set names keep their dashes.
		{"kg-{environment}-{permission_set}", "kg-prod-db-readonly", true, "db-readonly", tags{"environment": "prod"}},
		{"kg-{environment}-{permission_set}", "kg-prod-x", true, "x", tags{"environment": "prod"}},
		// Literal text is matched without regard to case; values keep the
		// name's own spelling.
		{"kg-{environment}-{permission_set}", "KG-Prod-DB-ReadOnly", true, "DB-ReadOnly", tags{"environment": "Prod"}},
		{"kg-{environment}-{permission_set}", "kg-prod", false, "", nil},
		{"kg-{environment}-{permission_set}", "kg-prod-", false, "", nil},
		{"kg-{environment}-{permission_set}", "kg--db-readonly", false, "", nil},
		{"kg-{environment}-{permission_set}", "marketing", false, "", nil},
		{"kg-{environment}-{permission_set}", "xkg-prod-db", false, "", nil},
		// Placeholders after {permission_set} split at the last separator.
		{"{permission_set}-{environment}", "db-readonly-prod", true, "db-readonly", tags{"environment": "prod"}},
		{"{permission_set}-{environment}.x", "db-readonly-pr.od.x", true, "db-readonly", tags{"environment": "pr.od"}},
		{"{permission_set}-{environment}.x", "db-readonly-prod.X", true, "db-readonly", tags{"environment": "prod"}},
		{"{permission_set}-{environment}", "-prod", false, "", nil},
		{"{project}-{permission_set}-{environment}", "alpha-db-readonly-prod", true, "db-readonly", tags{"project": "alpha", "environment": "prod"}},
		// A literal after a tag must follow it at its first separator.
		{"kg-{environment}-x-{permission_set}", "kg-prod-y-x-db", false, "", nil},
		{"kg-{environment}-x-{permission_set}", "kg-prod-x-db", true, "db", tags{"environment": "prod"}},
		{"{permission_set}", "anything at all", true, "anything at all", tags{}},
		{"kg-{permission_set}-ro", "kg-orders-ro", true, "orders", tags{}},
		{"kg-{permission_set}-ro", "kg-ro", false, "", nil},
		// Case folding beyond ASCII: the Kelvin sign folds to k.
		{"kg-{environment}-{permission_set}", "\u212ag-prod-db", true, "db", tags{"environment": "prod"}},
		{"{environment}k{permission_set}", "pro\u212adb", true, "db", tags{"environment": "pro"}},
	} {
		p, err := ParseGroupPattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := p.Match(tc.name)
		if ok != tc.ok {
			t.Errorf("%s: Match(%q) ok = %v, want %v (%+v)", tc.pattern, tc.name, ok, tc.ok, m)
			continue
		}
		if ok && (m.PermissionSet != tc.set || !reflect.DeepEqual(m.Tags, tc.tags)) {
			t.Errorf("%s: Match(%q) = %q %v, want %q %v", tc.pattern, tc.name, m.PermissionSet, m.Tags, tc.set, tc.tags)
		}
	}
}

// namingDatabases are two environments, one of them in two projects.
var namingDatabases = []Database{
	{Name: "orders", Tags: map[string]string{"environment": "prod", "project": "alpha"}},
	{Name: "scratch", Tags: map[string]string{"environment": "dev", "project": "alpha"}},
	{Name: "ledger", Tags: map[string]string{"environment": "prod", "project": "beta"}},
}

func TestAssign(t *testing.T) {
	p, err := ParseGroupPattern("kg-{environment}-{permission_set}")
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"kg-prod-db-readonly", "marketing", "KG-DEV-DB-ReadWrite", "kg-prod-db-nosuch", "kg-staging-db-readonly", "analysts"}
	got, findings := p.Assign(groups, []string{"db-readonly", "db-readwrite"}, namingDatabases)
	want := []Assignment{
		{Group: "kg-prod-db-readonly", PermissionSet: "db-readonly", DatabaseTags: map[string]string{"environment": "prod"}, ID: "group_naming[kg-prod-db-readonly]"},
		// Looked up without regard to case, the configured spelling kept.
		{Group: "KG-DEV-DB-ReadWrite", PermissionSet: "db-readwrite", DatabaseTags: map[string]string{"environment": "dev"}, ID: "group_naming[KG-DEV-DB-ReadWrite]"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("assignments =\n%+v\nwant\n%+v", got, want)
	}
	wantFindings := []Finding{
		{Group: "marketing", Kind: FindingNoMatch, Reason: "does not match the group naming rule kg-{environment}-{permission_set}"},
		{Group: "kg-prod-db-nosuch", Kind: FindingUnknownPermissionSet, Reason: `names permission set "db-nosuch", which is not defined under permission_sets`},
		{Group: "kg-staging-db-readonly", Kind: FindingUnknownTagValue, Reason: "names databases with environment=staging, and no database has that tag"},
		{Group: "analysts", Kind: FindingNoMatch, Reason: "does not match the group naming rule kg-{environment}-{permission_set}"},
	}
	if !reflect.DeepEqual(findings, wantFindings) {
		t.Errorf("findings =\n%+v\nwant\n%+v", findings, wantFindings)
	}
}

func TestAssignTagCombination(t *testing.T) {
	p, err := ParseGroupPattern("{project}.{environment}.{permission_set}")
	if err != nil {
		t.Fatal(err)
	}
	// Each value exists, but no database has both beta and dev.
	got, findings := p.Assign([]string{"beta.prod.ro", "beta.dev.ro"}, []string{"ro"}, namingDatabases)
	if len(got) != 1 || got[0].Group != "beta.prod.ro" || !reflect.DeepEqual(got[0].DatabaseTags, map[string]string{"environment": "prod", "project": "beta"}) {
		t.Errorf("assignments = %+v", got)
	}
	if len(findings) != 1 || findings[0].Kind != FindingUnknownTagValue || findings[0].Reason != "names databases with environment=dev, project=beta, and no database has those tags together" {
		t.Errorf("findings = %+v", findings)
	}
}

func TestAssignWithoutTags(t *testing.T) {
	p, err := ParseGroupPattern("kg-{permission_set}")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := p.Assign([]string{"kg-db-readonly"}, []string{"db-readonly"}, namingDatabases)
	if len(got) != 1 || !reflect.DeepEqual(got[0].Databases, []string{AllDatabases}) || got[0].DatabaseTags != nil {
		t.Errorf("a pattern without tags assigns %+v, want every database", got)
	}
}

// TestAssignAmbiguousCase: a value that matches two configured spellings
// only without regard to case is not guessed at.
func TestAssignAmbiguousCase(t *testing.T) {
	p, err := ParseGroupPattern("kg-{permission_set}")
	if err != nil {
		t.Fatal(err)
	}
	got, findings := p.Assign([]string{"kg-RO", "kg-Ro"}, []string{"ro", "RO"}, namingDatabases)
	if len(got) != 1 || got[0].PermissionSet != "RO" {
		t.Errorf("assignments = %+v, want kg-RO → RO only", got)
	}
	if len(findings) != 1 || findings[0].Group != "kg-Ro" || findings[0].Kind != FindingUnknownPermissionSet {
		t.Errorf("findings = %+v", findings)
	}
}

// A derived assignment decides like any other, and is named by its group.
func TestDerivedAssignmentDecides(t *testing.T) {
	p, err := ParseGroupPattern("kg-{environment}-{permission_set}")
	if err != nil {
		t.Fatal(err)
	}
	sets := []PermissionSet{{Name: "db-readonly", Level: ReadOnly}, {Name: "db-readwrite", Level: ReadWrite}}
	derived, _ := p.Assign([]string{"kg-prod-db-readonly"}, []string{"db-readonly", "db-readwrite"}, namingDatabases)
	policy, err := Compile(Rules{PermissionSets: sets, Assignments: append([]Assignment{
		{Group: "analysts", PermissionSet: "db-readwrite", Databases: []string{"scratch"}},
	}, derived...)})
	if err != nil {
		t.Fatal(err)
	}
	alice := identity.Principal{UserName: "alice", Active: true, Groups: []string{"kg-prod-db-readonly"}}
	orders, scratch := namingDatabases[0], namingDatabases[1]
	d := policy.Decide(alice, orders, ReadOnly)
	if !d.Allowed || d.Policy != "group_naming[kg-prod-db-readonly]" || d.Grant.Group != "kg-prod-db-readonly" ||
		d.Reason != "alice is in kg-prod-db-readonly → db-readonly (ro) on orders (environment=prod)" {
		t.Errorf("ro on orders: %+v", d)
	}
	if d := policy.Decide(alice, orders, ReadWrite); d.Allowed {
		t.Errorf("rw on orders allowed: %s", d.Reason)
	}
	if d := policy.Decide(alice, scratch, ReadOnly); d.Allowed || !strings.Contains(d.Reason, "scratch has environment=dev") {
		t.Errorf("ro on scratch: %+v", d)
	}
	// The config's own assignment keeps its place-derived id.
	bob := identity.Principal{UserName: "bob", Active: true, Groups: []string{"analysts"}}
	if d := policy.Decide(bob, scratch, ReadWrite); !d.Allowed || d.Policy != "assignments[0]" {
		t.Errorf("bob: %+v", d)
	}
}

func TestAssignmentIDs(t *testing.T) {
	sets := []PermissionSet{{Name: "ro", Level: ReadOnly}}
	_, err := Compile(Rules{PermissionSets: sets, Assignments: []Assignment{
		{Group: "a", PermissionSet: "ro", Databases: []string{"*"}, ID: "group_naming[a]"},
		{Group: "b", PermissionSet: "ro", Databases: []string{"*"}, ID: "group_naming[a]"},
	}})
	if err == nil || !strings.Contains(err.Error(), `rule id "group_naming[a]" is used twice`) {
		t.Errorf("duplicate ids: %v", err)
	}
	_, err = Compile(Rules{PermissionSets: sets, Cedar: []CedarFile{{Name: "p.cedar", Text: []byte(
		`@id("group_naming[x]/ro") permit (principal, action, resource);`)}}})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("a policy file taking a naming rule's id: %v", err)
	}
}
