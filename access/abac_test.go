package access

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
)

func conds(t testing.TB, src ...string) Conditions {
	t.Helper()
	c, err := ParseConditions(src...)
	if err != nil {
		t.Fatalf("ParseConditions: %v", err)
	}
	return c
}

func mustCompile(t testing.TB, r Rules) *Policy {
	t.Helper()
	p, err := Compile(r)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func tagged(name string, tags ...string) Database {
	db := Database{Name: name, Tags: map[string]string{}}
	for i := 0; i+1 < len(tags); i += 2 {
		db.Tags[tags[i]] = tags[i+1]
	}
	return db
}

func personWith(name string, tags map[string]string, groups ...string) identity.Principal {
	return identity.Principal{UserName: name, Active: true, Groups: groups, Attributes: tags}
}

var (
	ordersProd = tagged("orders", "environment", "prod", "tier", "gold")
	ordersDev  = tagged("orders-dev", "environment", "dev")
)

// TestAcceptanceEnvironment is the scenario of the issue: a permission set
// conditioned on database.environment == person.environment lets alice
// (environment=prod) reach the prod database and refuses bob
// (environment=dev), and the explanation names the condition.
func TestAcceptanceEnvironment(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{
			Name: "prod-readonly", Description: "Read-only on databases of the person's own environment",
			Level: ReadOnly, TokenTTL: 15 * time.Minute, SessionDuration: 8 * time.Hour,
			Conditions: conds(t, "database.environment == person.environment"),
		}},
		Assignments: []Assignment{{Group: "engineers", PermissionSet: "prod-readonly", Databases: []string{AllDatabases}}},
	})
	alice := personWith("alice", map[string]string{"environment": "prod"}, "engineers")
	bob := personWith("bob", map[string]string{"environment": "dev"}, "engineers")

	d := p.Decide(alice, ordersProd, ReadOnly)
	if !d.Allowed {
		t.Fatalf("alice refused on prod: %s", d.Reason)
	}
	if want := "alice is in engineers → prod-readonly (ro) on orders, where database.environment == person.environment (orders has environment=prod, alice has environment=prod)"; d.Reason != want {
		t.Errorf("alice's reason = %q\n                   want %q", d.Reason, want)
	}
	if d.Condition != "database.environment == person.environment" || d.Policy != "assignments[0]" || d.Grant.Group != "engineers" || d.Grant.PermissionSet.Name != "prod-readonly" {
		t.Errorf("alice's decision = %+v", d)
	}
	if d.Grant.PermissionSet.SessionDuration != 8*time.Hour || d.Grant.PermissionSet.Description == "" {
		t.Errorf("the grant lost the set's terms: %+v", d.Grant.PermissionSet)
	}

	d = p.Decide(bob, ordersProd, ReadOnly)
	if d.Allowed {
		t.Fatalf("bob allowed on prod: %s", d.Reason)
	}
	if want := "bob is in engineers → prod-readonly (ro), but its condition database.environment == person.environment does not hold (orders has environment=prod, bob has environment=dev)"; d.Reason != want {
		t.Errorf("bob's reason = %q\n                 want %q", d.Reason, want)
	}
	if d.Condition != "database.environment == person.environment" || d.Policy != "assignments[0]" || d.Grant != (Grant{}) || d.Deny != "" {
		t.Errorf("bob's decision = %+v", d)
	}

	if d := p.Decide(bob, ordersDev, ReadOnly); !d.Allowed {
		t.Errorf("bob refused on his own environment: %s", d.Reason)
	}
	if d := p.Decide(alice, ordersDev, ReadOnly); d.Allowed {
		t.Errorf("alice allowed on dev: %s", d.Reason)
	}
	nobody := personWith("nobody", nil, "engineers")
	if d := p.Decide(nobody, ordersProd, ReadOnly); d.Allowed || !strings.Contains(d.Reason, "nobody has no environment tag") {
		t.Errorf("a person without the tag: %+v", d)
	}
	if d := p.Decide(alice, Database{Name: "untagged"}, ReadOnly); d.Allowed || !strings.Contains(d.Reason, "untagged has no environment tag") {
		t.Errorf("a database without the tag: %+v", d)
	}
}

// TestAcceptanceDenyWins: an explicit deny on environment=prod for group
// contractors overrides any allow, whatever the level or the grant.
func TestAcceptanceDenyWins(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{
			{Name: "db-readonly", Level: ReadOnly},
			{Name: "db-admin", Level: Admin},
		},
		Assignments: []Assignment{
			{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders", "orders-dev"}},
			{Group: "dba", PermissionSet: "db-admin", Databases: []string{AllDatabases}},
		},
		Denies: []Deny{{Description: "Contractors never reach production", Group: "contractors", DatabaseTags: map[string]string{"environment": "prod"}}},
	})
	carl := personWith("carl", nil, "analysts", "dba", "contractors")
	for _, l := range Levels {
		d := p.Decide(carl, ordersProd, l)
		if d.Allowed {
			t.Fatalf("contractor allowed %s on prod: %s", l, d.Reason)
		}
		want := `"Contractors never reach production" denies carl ` + string(l) + ` on orders: carl is in contractors, orders has environment=prod`
		if d.Reason != want {
			t.Errorf("reason = %q\n   want %q", d.Reason, want)
		}
		if d.Deny != "Contractors never reach production" || d.Policy != "deny[0]" || d.Grant != (Grant{}) {
			t.Errorf("decision = %+v", d)
		}
	}
	if d := p.Decide(carl, ordersDev, Admin); !d.Allowed {
		t.Errorf("contractor refused outside production: %s", d.Reason)
	}
	// Grants lists what assignments give; the deny still has the last word.
	if g := p.Grants(carl, ordersProd); len(g) != 2 {
		t.Errorf("Grants = %+v, want both assignments", g)
	}
	if l, ok := p.LeastLevel(carl, ordersProd); !ok || l != ReadOnly {
		t.Errorf("LeastLevel = %q, %v", l, ok)
	}
	dana := personWith("dana", nil, "analysts", "dba")
	if d := p.Decide(dana, ordersProd, Admin); !d.Allowed {
		t.Errorf("a non-contractor refused: %s", d.Reason)
	}
}

func TestDenyRules(t *testing.T) {
	sets := []PermissionSet{{Name: "admin", Level: Admin}}
	as := []Assignment{{Group: "dba", PermissionSet: "admin", Databases: []string{AllDatabases}}}
	dora := personWith("dora", map[string]string{"department": "contractors"}, "dba")
	dan := personWith("dan", map[string]string{"department": "data"}, "dba")
	dee := personWith("dee", nil, "dba")
	tests := []struct {
		name  string
		deny  Deny
		who   identity.Principal
		db    Database
		level Level
		allow bool
	}{
		{"a level denies the levels above it", Deny{Description: "d", Databases: []string{AllDatabases}, Levels: []Level{ReadWrite}}, dan, ordersProd, ReadOnly, true},
		{"rw denied by [rw]", Deny{Description: "d", Databases: []string{AllDatabases}, Levels: []Level{ReadWrite}}, dan, ordersProd, ReadWrite, false},
		{"admin denied by [rw]", Deny{Description: "d", Databases: []string{AllDatabases}, Levels: []Level{ReadWrite}}, dan, ordersProd, Admin, false},
		{"no levels deny all", Deny{Description: "d", Databases: []string{"orders"}}, dan, ordersProd, ReadOnly, false},
		{"named databases only", Deny{Description: "d", Databases: []string{"orders"}}, dan, ordersDev, ReadOnly, true},
		{"no group applies to everyone", Deny{Description: "d", DatabaseTags: map[string]string{"tier": "gold"}}, dan, ordersProd, ReadOnly, false},
		{"a group applies to its members only", Deny{Description: "d", Group: "contractors", Databases: []string{AllDatabases}}, dan, ordersProd, ReadOnly, true},
		{"a selector needs every tag", Deny{Description: "d", DatabaseTags: map[string]string{"tier": "gold", "environment": "dev"}}, dan, ordersProd, ReadOnly, true},
		{"conditions that hold", Deny{Description: "d", Databases: []string{AllDatabases}, Conditions: conds(t, "person.department == contractors")}, dora, ordersProd, ReadOnly, false},
		{"conditions that do not hold", Deny{Description: "d", Databases: []string{AllDatabases}, Conditions: conds(t, "person.department == contractors")}, dan, ordersProd, ReadOnly, true},
		// Absent means the comparison is false: the deny does not apply...
		{"a missing tag does not match !=", Deny{Description: "d", Databases: []string{AllDatabases}, Conditions: conds(t, "person.department != data")}, dee, ordersProd, ReadOnly, true},
		// ...and not has is how to deny people without the tag.
		{"not has denies people without the tag", Deny{Description: "d", Databases: []string{AllDatabases}, Conditions: conds(t, "not has person.department")}, dee, ordersProd, ReadOnly, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Rules{PermissionSets: sets, Assignments: as, Denies: []Deny{tt.deny}})
			d := p.Decide(tt.who, tt.db, tt.level)
			if d.Allowed != tt.allow {
				t.Fatalf("Allowed = %v, want %v: %s", d.Allowed, tt.allow, d.Reason)
			}
			if !d.Allowed && d.Deny != "d" {
				t.Errorf("refusal does not name the deny rule: %+v", d)
			}
		})
	}
}

func TestTagSelectors(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "ro", Level: ReadOnly}, {Name: "rw", Level: ReadWrite}},
		Assignments: []Assignment{
			{Group: "engineers", PermissionSet: "ro", DatabaseTags: map[string]string{"environment": "prod"}},
			{Group: "engineers", PermissionSet: "rw", DatabaseTags: map[string]string{"environment": "dev", "team": "shop"}},
		},
	})
	erin := personWith("erin", nil, "engineers")
	shopDev := tagged("shop-dev", "environment", "dev", "team", "shop")
	tests := []struct {
		db     Database
		level  Level
		allow  bool
		reason string
	}{
		{ordersProd, ReadOnly, true, "erin is in engineers → ro (ro) on orders (environment=prod)"},
		{shopDev, ReadWrite, true, "erin is in engineers → rw (rw) on shop-dev (environment=dev, team=shop)"},
		{ordersProd, ReadWrite, false, "erin is in engineers → ro (ro); engineers → rw (rw) would grant rw on orders, but it applies to databases with environment=dev, team=shop, and orders has environment=prod"},
		{ordersDev, ReadOnly, false, "erin is in engineers → ro (ro), but it applies to databases with environment=prod, and orders-dev has environment=dev"},
		{Database{Name: "bare"}, ReadOnly, false, "erin is in engineers → ro (ro), but it applies to databases with environment=prod, and bare has no environment tag"},
		{ordersDev, Admin, false, "erin is in engineers; no assignment grants admin on orders-dev to those groups"},
	}
	for _, tt := range tests {
		d := p.Decide(erin, tt.db, tt.level)
		if d.Allowed != tt.allow || d.Reason != tt.reason {
			t.Errorf("%s at %s: %v %q\n                     want %v %q", tt.db.Name, tt.level, d.Allowed, d.Reason, tt.allow, tt.reason)
		}
	}
}

func TestSeveralDatabaseNames(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "ro", Level: ReadOnly}},
		Assignments:    []Assignment{{Group: "g", PermissionSet: "ro", Databases: []string{"a", "b", "c", "b"}}},
	})
	for _, name := range []string{"a", "b", "c"} {
		if d := p.Decide(person("x", "g"), Database{Name: name}, ReadOnly); !d.Allowed {
			t.Errorf("refused on %s: %s", name, d.Reason)
		}
	}
	if d := p.Decide(person("x", "g"), Database{Name: "d"}, ReadOnly); d.Allowed {
		t.Error("allowed on a database not listed")
	}
}

// TestConditionsAndMFA: the MFA explanation applies to a grant whose
// conditions hold; one whose conditions fail is explained by them.
func TestConditionsAndMFA(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "prod-admin", Level: Admin, RequireMFA: true, Conditions: conds(t, "person.department in [dba, sre]")}},
		Assignments:    []Assignment{{Group: "ops", PermissionSet: "prod-admin", Databases: []string{AllDatabases}}},
	})
	sre := personWith("sam", map[string]string{"department": "sre"}, "ops")
	d := p.Decide(sre, ordersProd, Admin)
	if d.Allowed || !strings.Contains(d.Reason, "requires MFA") || d.Policy != "assignments[0]" {
		t.Errorf("without MFA: %+v", d)
	}
	sre.MFA = true
	if d := p.Decide(sre, ordersProd, Admin); !d.Allowed || !strings.Contains(d.Reason, "person.department in [dba, sre] (sam has department=sre)") {
		t.Errorf("with MFA: %+v", d)
	}
	sales := personWith("sal", map[string]string{"department": "sales"}, "ops")
	sales.MFA = true
	if d := p.Decide(sales, ordersProd, Admin); d.Allowed || !strings.Contains(d.Reason, "its condition person.department in [dba, sre] does not hold (sal has department=sales)") {
		t.Errorf("condition fails: %+v", d)
	}
	sales.MFA = false
	if d := p.Decide(sales, ordersProd, Admin); strings.Contains(d.Reason, "MFA") {
		t.Errorf("a grant whose condition fails was explained by MFA: %s", d.Reason)
	}
}

// TestGrantsApplyConditions: Grants lists only the grants whose
// conditions hold for the person and database.
func TestGrantsApplyConditions(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{
			{Name: "same-env", Level: ReadWrite, Conditions: conds(t, "database.environment == person.environment")},
			{Name: "any", Level: ReadOnly},
		},
		Assignments: []Assignment{
			{Group: "g", PermissionSet: "same-env", Databases: []string{AllDatabases}},
			{Group: "g", PermissionSet: "any", Databases: []string{AllDatabases}},
		},
	})
	dev := personWith("d", map[string]string{"environment": "dev"}, "g")
	if g := p.Grants(dev, ordersProd); len(g) != 1 || g[0].PermissionSet.Name != "any" {
		t.Errorf("Grants on prod = %+v", g)
	}
	if g := p.Grants(dev, ordersDev); len(g) != 2 || g[0].PermissionSet.Name != "any" || g[1].PermissionSet.Name != "same-env" {
		t.Errorf("Grants on dev = %+v", g)
	}
	if l, _ := p.LeastLevel(dev, ordersProd); l != ReadOnly {
		t.Errorf("LeastLevel on prod = %q", l)
	}
	if d := p.Decide(dev, ordersProd, ReadWrite); d.Allowed || !strings.Contains(d.Reason, "d is in g → any (ro); g → same-env (rw) would grant rw on orders, but its condition") {
		t.Errorf("rw on prod: %+v", d)
	}
}

// TestPrincipalChangesAreSeen: decisions about the same person follow
// their current groups, tags and MFA, whatever was decided before.
func TestPrincipalChangesAreSeen(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "s", Level: ReadOnly, RequireMFA: true, Conditions: conds(t, "database.environment == person.environment")}},
		Assignments:    []Assignment{{Group: "g", PermissionSet: "s", Databases: []string{AllDatabases}}},
	})
	pr := identity.Principal{UserName: "u", Active: true, Groups: []string{"g"}, Attributes: map[string]string{"environment": "prod"}, MFA: true}
	db := tagged("db", "environment", "prod")
	steps := []struct {
		change func()
		allow  bool
	}{
		{func() {}, true},
		{func() { pr.MFA = false }, false},
		{func() { pr.MFA = true }, true},
		{func() { pr.Groups = []string{"h"} }, false},
		{func() { pr.Groups = []string{"h", "g"} }, true},
		{func() { pr.Attributes = map[string]string{"environment": "dev"} }, false},
		{func() { pr.Attributes["environment"] = "prod" }, true},
		{func() { db.Tags = map[string]string{"environment": "dev"} }, false},
		{func() { db.Tags["environment"] = "prod" }, true},
		{func() { pr.Active = false }, false},
	}
	for i, s := range steps {
		s.change()
		if d := p.Decide(pr, db, ReadOnly); d.Allowed != s.allow {
			t.Fatalf("step %d: Allowed = %v, want %v: %s", i, d.Allowed, s.allow, d.Reason)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	ro := PermissionSet{Name: "ro", Level: ReadOnly}
	tests := []struct {
		name string
		r    Rules
		want string
	}{
		{"databases and tags", Rules{PermissionSets: []PermissionSet{ro}, Assignments: []Assignment{{Group: "g", PermissionSet: "ro", Databases: []string{"a"}, DatabaseTags: map[string]string{"k": "v"}}}},
			`assignment for group "g": give databases or database_tags, not both`},
		{"session too short", Rules{PermissionSets: []PermissionSet{{Name: "x", Level: ReadOnly, SessionDuration: time.Second}}},
			`permission set "x": session_duration 1s is outside 1m0s..24h0m0s`},
		{"session too long", Rules{PermissionSets: []PermissionSet{{Name: "x", Level: ReadOnly, SessionDuration: 25 * time.Hour}}},
			`session_duration 25h0m0s is outside`},
		{"deny without description", Rules{Denies: []Deny{{Databases: []string{"*"}}}}, "deny rule 1 has no description"},
		{"deny without databases", Rules{Denies: []Deny{{Description: "x"}}}, `deny rule "x": give either databases ("*" for all) or database_tags`},
		{"deny with both", Rules{Denies: []Deny{{Description: "x", Databases: []string{"*"}, DatabaseTags: map[string]string{"k": "v"}}}}, `deny rule "x": give either`},
		{"deny with a bad level", Rules{Denies: []Deny{{Description: "x", Databases: []string{"*"}, Levels: []Level{"write"}}}}, `deny rule "x": unknown access level "write"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestNothingWithoutAssignmentEvenWithDenies: deny rules and conditions
// never grant anything on their own.
func TestNothingWithoutAssignmentEvenWithDenies(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "x", Level: Admin, Conditions: conds(t, "not has person.nothing")}},
		Denies:         []Deny{{Description: "d", Group: "g", Databases: []string{"other"}, Conditions: conds(t, "not has person.x")}},
	})
	for _, l := range Levels {
		if d := p.Decide(personWith("a", nil, "g"), ordersProd, l); d.Allowed {
			t.Fatalf("allowed without an assignment: %s", d.Reason)
		}
	}
}

// TestCacheStaysBounded: deciding for more people than the cache holds
// keeps it bounded, and decisions right.
func TestCacheStaysBounded(t *testing.T) {
	p := mustCompile(t, Rules{
		PermissionSets: []PermissionSet{{Name: "s", Level: ReadOnly, Conditions: conds(t, "database.environment == person.environment")}},
		Assignments:    []Assignment{{Group: "g", PermissionSet: "s", Databases: []string{AllDatabases}}},
	})
	for i := range maxCached + 100 {
		env := []string{"prod", "dev"}[i%2]
		pr := personWith(fmt.Sprintf("u%d", i), map[string]string{"environment": env}, "g")
		if d := p.Decide(pr, ordersProd, ReadOnly); d.Allowed != (env == "prod") {
			t.Fatalf("person %d: %+v", i, d)
		}
		if n := p.cache.people.size.Load(); n > maxCached {
			t.Fatalf("the cache holds %d people", n)
		}
	}
}

// TestConcurrentDecisions: decisions for the same people, whose groups and
// tags change, from many goroutines at once (run with -race).
func TestConcurrentDecisions(t *testing.T) {
	p := mustCompile(t, exampleRules(t))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				groups := [][]string{{"engineers"}, {"analysts", "contractors"}, {"dba"}}[(i+w)%3]
				env := []string{"prod", "dev"}[(i/3+w)%2]
				pr := identity.Principal{UserName: fmt.Sprintf("u%d", i%5), Active: true, Groups: groups, MFA: i%2 == 0,
					Attributes: map[string]string{"environment": env, "department": "data", "team": "t"}}
				want := unionAllows(p.PolicySet(), pr, ordersProd, Levels[i%3])
				if got := p.Decide(pr, ordersProd, Levels[i%3]); got.Allowed != want {
					t.Errorf("Decide = %v, all policies = %v: %s", got.Allowed, want, got.Reason)
					return
				}
			}
		}()
	}
	wg.Wait()
}
