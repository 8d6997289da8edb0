package access

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
)

var (
	orders    = Database{Name: "orders", Tags: map[string]string{"environment": "production"}}
	analytics = Database{Name: "analytics"}
)

func mustPolicy(t *testing.T, sets []PermissionSet, as []Assignment) *Policy {
	t.Helper()
	p, err := NewPolicy(sets, as)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return p
}

// examplePolicy: analysts read orders and analytics, engineers write orders,
// dba administer everything.
func examplePolicy(t *testing.T) *Policy {
	t.Helper()
	return mustPolicy(t,
		[]PermissionSet{
			{Name: "db-readonly", Level: ReadOnly, TokenTTL: 15 * time.Minute},
			{Name: "db-readwrite", Level: ReadWrite, TokenTTL: 30 * time.Minute},
			{Name: "db-admin", Level: Admin},
		},
		[]Assignment{
			{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders", "analytics"}},
			{Group: "engineers", PermissionSet: "db-readwrite", Databases: []string{"orders"}},
			{Group: "dba", PermissionSet: "db-admin", Databases: []string{AllDatabases}},
		})
}

func person(name string, groups ...string) identity.Principal {
	return identity.Principal{UserName: name, Active: true, Groups: groups}
}

func TestDecide(t *testing.T) {
	p := examplePolicy(t)
	tests := []struct {
		name   string
		who    identity.Principal
		db     Database
		want   Level
		allow  bool
		reason string
		grant  Grant
	}{
		{
			name: "covered at the level held", who: person("alice", "analysts"), db: orders, want: ReadOnly, allow: true,
			reason: "alice is in analysts → db-readonly (ro) on orders",
			grant:  Grant{Group: "analysts", PermissionSet: PermissionSet{Name: "db-readonly", Level: ReadOnly, TokenTTL: 15 * time.Minute}},
		},
		{
			name: "higher grant covers a lower level", who: person("erin", "engineers"), db: orders, want: ReadOnly, allow: true,
			reason: "erin is in engineers → db-readwrite (rw) on orders",
			grant:  Grant{Group: "engineers", PermissionSet: PermissionSet{Name: "db-readwrite", Level: ReadWrite, TokenTTL: 30 * time.Minute}},
		},
		{
			name: "level not held", who: person("alice", "analysts"), db: orders, want: ReadWrite,
			reason: "alice is in analysts → db-readonly (ro); no assignment grants rw on orders",
		},
		{
			name: "admin not held by rw", who: person("erin", "engineers"), db: orders, want: Admin,
			reason: "erin is in engineers → db-readwrite (rw); no assignment grants admin on orders",
		},
		{
			name: "assignment for another database", who: person("erin", "engineers"), db: analytics, want: ReadOnly,
			reason: "erin is in engineers; no assignment grants ro on analytics to those groups",
		},
		{
			name: "no group", who: person("bob"), db: orders, want: ReadOnly,
			reason: "bob is in no group; no assignment grants ro on orders",
		},
		{
			name: "groups without assignments, listed sorted", who: person("carol", "sales", "marketing"), db: orders, want: ReadOnly,
			reason: "carol is in marketing, sales; no assignment grants ro on orders to those groups",
		},
		{
			name: "disabled", who: identity.Principal{UserName: "dave", Groups: []string{"dba"}}, db: orders, want: ReadOnly,
			reason: "dave was disabled",
		},
		{
			name: "wildcard covers any database", who: person("dan", "dba"), db: Database{Name: "brand-new"}, want: Admin, allow: true,
			reason: "dan is in dba → db-admin (admin) on brand-new",
			grant:  Grant{Group: "dba", PermissionSet: PermissionSet{Name: "db-admin", Level: Admin, TokenTTL: DefaultTokenTTL}},
		},
		{
			name: "several grants, the reason lists them", who: person("fay", "engineers", "analysts"), db: orders, want: Admin,
			reason: "fay is in analysts → db-readonly (ro), engineers → db-readwrite (rw); no assignment grants admin on orders",
		},
		{
			name: "most specific grant allows", who: person("gus", "dba", "engineers", "analysts"), db: orders, want: ReadOnly, allow: true,
			reason: "gus is in analysts → db-readonly (ro) on orders",
			grant:  Grant{Group: "analysts", PermissionSet: PermissionSet{Name: "db-readonly", Level: ReadOnly, TokenTTL: 15 * time.Minute}},
		},
		{
			name: "unknown level", who: person("dan", "dba"), db: orders, want: Level("superuser"),
			reason: `unknown access level "superuser": use ro, rw or admin`,
		},
		{
			name: "empty level", who: person("dan", "dba"), db: orders, want: Level(""),
			reason: `unknown access level "": use ro, rw or admin`,
		},
		{
			name: "group names are exact", who: person("hal", "Analysts", "analysts-2"), db: orders, want: ReadOnly,
			reason: "hal is in Analysts, analysts-2; no assignment grants ro on orders to those groups",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.who, tt.db, tt.want)
			if d.Allowed != tt.allow {
				t.Errorf("Allowed = %v, want %v (reason %q)", d.Allowed, tt.allow, d.Reason)
			}
			if d.Reason != tt.reason {
				t.Errorf("Reason = %q\n          want %q", d.Reason, tt.reason)
			}
			if d.User != tt.who.UserName || d.Database != tt.db.Name || d.Level != tt.want {
				t.Errorf("Decision names %s/%s/%s, want %s/%s/%s", d.User, d.Database, d.Level, tt.who.UserName, tt.db.Name, tt.want)
			}
			if d.Grant != tt.grant {
				t.Errorf("Grant = %+v, want %+v", d.Grant, tt.grant)
			}
			if d.TokenTTL() != tt.grant.PermissionSet.TokenTTL {
				t.Errorf("TokenTTL = %s, want %s", d.TokenTTL(), tt.grant.PermissionSet.TokenTTL)
			}
		})
	}
}

// TestWildcardIsNotADatabaseName: "*" in an assignment covers every
// database, but asking for a database literally named "*" through a specific
// assignment gets nothing.
func TestWildcardIsNotADatabaseName(t *testing.T) {
	p := examplePolicy(t)
	if d := p.Decide(person("alice", "analysts"), Database{Name: AllDatabases}, ReadOnly); d.Allowed {
		t.Errorf("alice was allowed on %q: %s", AllDatabases, d.Reason)
	}
	for _, db := range []string{"orders", "analytics", "x", ""} {
		if d := p.Decide(person("dan", "dba"), Database{Name: db}, Admin); !d.Allowed {
			t.Errorf("dba refused on %q: %s", db, d.Reason)
		}
	}
}

func TestDisabledHoldsNothing(t *testing.T) {
	p := examplePolicy(t)
	dave := identity.Principal{UserName: "dave", Groups: []string{"dba", "analysts"}}
	if g := p.Grants(dave, orders); len(g) != 0 {
		t.Errorf("Grants of a disabled principal = %+v, want none", g)
	}
	if l, ok := p.LeastLevel(dave, orders); ok {
		t.Errorf("LeastLevel of a disabled principal = %q, true", l)
	}
	for _, l := range Levels {
		if d := p.Decide(dave, orders, l); d.Allowed {
			t.Errorf("disabled principal allowed at %s", l)
		}
	}
}

func TestLeastLevel(t *testing.T) {
	p := examplePolicy(t)
	tests := []struct {
		who  identity.Principal
		db   Database
		want Level
		ok   bool
	}{
		{person("alice", "analysts"), orders, ReadOnly, true},
		// A grant covers the levels below it: least privilege by default.
		{person("erin", "engineers"), orders, ReadOnly, true},
		{person("dan", "dba"), orders, ReadOnly, true},
		{person("gus", "dba", "engineers", "analysts"), orders, ReadOnly, true},
		{person("gus", "dba", "engineers"), analytics, ReadOnly, true},
		{person("erin", "engineers"), analytics, "", false},
		{person("bob"), orders, "", false},
	}
	for _, tt := range tests {
		got, ok := p.LeastLevel(tt.who, tt.db)
		if got != tt.want || ok != tt.ok {
			t.Errorf("LeastLevel(%s in %v, %s) = %q, %v; want %q, %v", tt.who.UserName, tt.who.Groups, tt.db.Name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestGrantsOrder(t *testing.T) {
	p := mustPolicy(t,
		[]PermissionSet{
			{Name: "z-admin", Level: Admin, TokenTTL: time.Minute},
			{Name: "rw-long", Level: ReadWrite, TokenTTL: time.Hour},
			{Name: "rw-short", Level: ReadWrite, TokenTTL: 5 * time.Minute},
			{Name: "b-ro", Level: ReadOnly, TokenTTL: 10 * time.Minute},
			{Name: "a-ro", Level: ReadOnly, TokenTTL: 10 * time.Minute},
		},
		[]Assignment{
			{Group: "g1", PermissionSet: "z-admin", Databases: []string{"*"}},
			{Group: "g2", PermissionSet: "rw-long", Databases: []string{"orders"}},
			{Group: "g3", PermissionSet: "rw-short", Databases: []string{"orders"}},
			{Group: "g5", PermissionSet: "b-ro", Databases: []string{"orders"}},
			{Group: "g4", PermissionSet: "b-ro", Databases: []string{"orders"}},
			{Group: "g6", PermissionSet: "a-ro", Databases: []string{"orders"}},
			{Group: "g7", PermissionSet: "a-ro", Databases: []string{"analytics"}},
		})
	g := p.Grants(person("x", "g1", "g2", "g3", "g4", "g5", "g6", "g7"), orders)
	var got []string
	for _, gr := range g {
		got = append(got, gr.Group+"/"+gr.PermissionSet.Name)
	}
	want := []string{"g6/a-ro", "g4/b-ro", "g5/b-ro", "g3/rw-short", "g2/rw-long", "g1/z-admin"}
	if !slices.Equal(got, want) {
		t.Errorf("Grants order = %v, want %v", got, want)
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"ro", "rw", "admin"} {
		l, err := ParseLevel(s)
		if err != nil || string(l) != s {
			t.Errorf("ParseLevel(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "RO", "read", "superuser", " ro", "ro "} {
		l, err := ParseLevel(s)
		if err == nil {
			t.Errorf("ParseLevel(%q) = %q, want an error", s, l)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) || !strings.Contains(err.Error(), "use ro, rw or admin") {
			t.Errorf("ParseLevel(%q) error %q: want it to quote the input and list the levels", s, err)
		}
	}
}

func TestCovers(t *testing.T) {
	// covers[i][j]: Levels[i] covers Levels[j].
	for i, have := range Levels {
		for j, want := range Levels {
			if got := have.Covers(want); got != (i >= j) {
				t.Errorf("%s.Covers(%s) = %v, want %v", have, want, got, i >= j)
			}
		}
	}
	bad := Level("root")
	for _, l := range Levels {
		if bad.Covers(l) {
			t.Errorf("unknown level covers %s", l)
		}
		if l.Covers(bad) {
			t.Errorf("%s covers an unknown level", l)
		}
	}
	if bad.Covers(bad) || Level("").Covers("") {
		t.Error("unknown level covers itself")
	}
	if !slices.Equal(Levels, []Level{ReadOnly, ReadWrite, Admin}) {
		t.Errorf("Levels = %v, want least to most privilege", Levels)
	}
}

func TestNewPolicy(t *testing.T) {
	ro := PermissionSet{Name: "ro", Level: ReadOnly}
	tests := []struct {
		name string
		sets []PermissionSet
		as   []Assignment
		want string // empty: no error
	}{
		{"empty", nil, nil, ""},
		{"ok", []PermissionSet{ro}, []Assignment{{Group: "g", PermissionSet: "ro", Databases: []string{"orders"}}}, ""},
		{"unknown permission set", []PermissionSet{ro}, []Assignment{{Group: "g", PermissionSet: "rw", Databases: []string{"orders"}}},
			`assignment for group "g" names unknown permission set "rw"`},
		{"unknown level", []PermissionSet{{Name: "x", Level: "write"}}, nil, `permission set "x": unknown access level "write"`},
		{"empty level", []PermissionSet{{Name: "x"}}, nil, `permission set "x": unknown access level ""`},
		{"ttl too long", []PermissionSet{{Name: "x", Level: ReadOnly, TokenTTL: MaxTokenTTL + time.Second}}, nil, `permission set "x": token_ttl 1h0m1s is outside`},
		{"ttl negative", []PermissionSet{{Name: "x", Level: ReadOnly, TokenTTL: -time.Minute}}, nil, `permission set "x": token_ttl -1m0s is outside`},
		{"ttl at the maximum", []PermissionSet{{Name: "x", Level: ReadOnly, TokenTTL: MaxTokenTTL}}, nil, ""},
		{"duplicate set", []PermissionSet{ro, {Name: "ro", Level: ReadWrite}}, nil, `permission set "ro" is defined twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.sets, tt.as)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewPolicy: %v", err)
			case tt.want == "" && p == nil:
				t.Fatal("NewPolicy returned nil policy and nil error")
			case tt.want != "" && err == nil:
				t.Fatalf("NewPolicy succeeded, want error %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("NewPolicy error %q, want %q", err, tt.want)
			case tt.want != "" && p != nil:
				t.Fatal("NewPolicy returned a policy with an error")
			}
		})
	}
}

func TestNewPolicyDefaultsTTL(t *testing.T) {
	p := mustPolicy(t, []PermissionSet{{Name: "ro", Level: ReadOnly}}, []Assignment{{Group: "g", PermissionSet: "ro", Databases: []string{"orders"}}})
	d := p.Decide(person("a", "g"), orders, ReadOnly)
	if !d.Allowed || d.TokenTTL() != DefaultTokenTTL {
		t.Errorf("Decide = %+v; want allowed with TokenTTL %s", d, DefaultTokenTTL)
	}
}

// TestNewPolicySubSecondTTL: NewPolicy's own message says token_ttl must be
// within 1s..1h, as the config validation enforces.
func TestNewPolicySubSecondTTL(t *testing.T) {
	_, err := NewPolicy([]PermissionSet{{Name: "x", Level: ReadOnly, TokenTTL: 500 * time.Millisecond}}, nil)
	if err == nil {
		t.Fatal("NewPolicy accepted token_ttl 500ms")
	}
}

// TestPolicyIsImmutable: changing the slices given to NewPolicy afterwards
// must not change its decisions.
func TestPolicyIsImmutable(t *testing.T) {
	sets := []PermissionSet{{Name: "ro", Level: ReadOnly}}
	dbs := []string{"orders"}
	as := []Assignment{{Group: "g", PermissionSet: "ro", Databases: dbs}}
	p := mustPolicy(t, sets, as)
	sets[0].Level = Admin
	as[0].Group = "other"
	if d := p.Decide(person("a", "g"), orders, ReadOnly); !d.Allowed {
		t.Errorf("changing the assignment slice after NewPolicy changed decisions: %s", d.Reason)
	}
	if d := p.Decide(person("a", "g"), orders, Admin); d.Allowed {
		t.Error("changing the permission set slice after NewPolicy changed decisions")
	}
	dbs[0] = "analytics"
	if d := p.Decide(person("a", "g"), orders, ReadOnly); !d.Allowed {
		t.Error("changing the databases slice after NewPolicy changed decisions")
	}
}

// TestDecideProperty checks Decide against a direct statement of the rule on
// random policies: a principal is allowed iff they are active and one of
// their groups has an assignment whose databases include db (or "*") and
// whose permission set's level is at least the level asked for.
func TestDecideProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(20240601, 7))
	groups := []string{"g0", "g1", "g2", "g3", "g4", "g5"}
	dbNames := []string{"orders", "analytics", "billing", "crm"}
	for iter := range 500 {
		var sets []PermissionSet
		for i := range 1 + r.IntN(4) {
			sets = append(sets, PermissionSet{
				Name:     fmt.Sprintf("set%d", i),
				Level:    Levels[r.IntN(len(Levels))],
				TokenTTL: time.Duration(1+r.IntN(60)) * time.Minute,
			})
		}
		var as []Assignment
		for range r.IntN(6) {
			var dbs []string
			if r.IntN(8) == 0 {
				dbs = []string{AllDatabases}
			} else {
				for _, d := range dbNames {
					if r.IntN(3) == 0 {
						dbs = append(dbs, d)
					}
				}
			}
			as = append(as, Assignment{
				Group:         groups[r.IntN(len(groups))],
				PermissionSet: sets[r.IntN(len(sets))].Name,
				Databases:     dbs,
			})
		}
		p := mustPolicy(t, sets, as)
		setLevel := map[string]Level{}
		for _, s := range sets {
			setLevel[s.Name] = s.Level
		}
		for range 20 {
			pr := identity.Principal{UserName: fmt.Sprintf("u%d", r.IntN(100)), Active: r.IntN(6) != 0}
			for _, g := range groups {
				if r.IntN(3) == 0 {
					pr.Groups = append(pr.Groups, g)
				}
			}
			db := Database{Name: dbNames[r.IntN(len(dbNames))]}
			want := Levels[r.IntN(len(Levels))]

			// The rule, stated directly.
			expect := false
			holds := false
			for _, a := range as {
				if !slices.Contains(pr.Groups, a.Group) || !(slices.Contains(a.Databases, db.Name) || slices.Contains(a.Databases, AllDatabases)) {
					continue
				}
				rank := slices.Index(Levels, setLevel[a.PermissionSet])
				if rank >= slices.Index(Levels, want) {
					expect = true
				}
				holds = true
			}
			expect = expect && pr.Active

			d := p.Decide(pr, db, want)
			if d.Allowed != expect {
				t.Fatalf("iteration %d: Decide(%+v, %s, %s) = %v (%s), want %v\nsets %+v\nassignments %+v",
					iter, pr, db.Name, want, d.Allowed, d.Reason, expect, sets, as)
			}
			if d.Allowed {
				// The grant that allowed it must be real and sufficient.
				if !pr.InGroup(d.Grant.Group) || !d.Grant.PermissionSet.Level.Covers(want) || d.TokenTTL() <= 0 {
					t.Fatalf("iteration %d: allowed through grant %+v which does not justify %s", iter, d.Grant, want)
				}
				if !strings.HasPrefix(d.Reason, pr.UserName+" is in "+d.Grant.Group+" → ") {
					t.Fatalf("iteration %d: reason %q does not name the grant", iter, d.Reason)
				}
			} else {
				if d.Grant != (Grant{}) {
					t.Fatalf("iteration %d: refusal carries grant %+v", iter, d.Grant)
				}
				if d.Reason == "" {
					t.Fatalf("iteration %d: refusal without a reason", iter)
				}
			}
			gotLeast, ok := p.LeastLevel(pr, db)
			switch {
			case !pr.Active || !holds:
				if ok {
					t.Fatalf("iteration %d: LeastLevel = %q, true; want none", iter, gotLeast)
				}
			case !ok || gotLeast != ReadOnly:
				// Every grant covers ro, and no rule here refuses it.
				t.Fatalf("iteration %d: LeastLevel = %q, %v; want ro", iter, gotLeast, ok)
			}
		}
	}
}

// TestNothingWithoutAssignment: with permission sets but no assignments,
// nobody reaches anything.
func TestNothingWithoutAssignment(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := mustPolicy(t, []PermissionSet{{Name: "admin", Level: Admin}, {Name: "ro", Level: ReadOnly}}, nil)
	for range 200 {
		pr := identity.Principal{UserName: fmt.Sprintf("u%d", r.IntN(50)), Active: true}
		for range r.IntN(5) {
			pr.Groups = append(pr.Groups, fmt.Sprintf("g%d", r.IntN(10)))
		}
		db := Database{Name: []string{"orders", "*", "", "analytics"}[r.IntN(4)]}
		for _, l := range Levels {
			if d := p.Decide(pr, db, l); d.Allowed {
				t.Fatalf("Decide(%+v, %q, %s) allowed without any assignment: %s", pr, db.Name, l, d.Reason)
			}
		}
		if _, ok := p.LeastLevel(pr, db); ok {
			t.Fatalf("LeastLevel(%+v, %q) found a level without any assignment", pr, db.Name)
		}
	}
}

// A permission set that requires MFA is granted only to a principal whose
// sign-in used it, and the refusal says so; another grant that does not
// require MFA still applies.
func TestRequireMFA(t *testing.T) {
	p := mustPolicy(t,
		[]PermissionSet{
			{Name: "prod-admin", Level: Admin, RequireMFA: true},
			{Name: "db-readonly", Level: ReadOnly},
		},
		[]Assignment{
			{Group: "dba", PermissionSet: "prod-admin", Databases: []string{"orders"}},
			{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders"}},
		})
	dba := person("dora", "dba")
	d := p.Decide(dba, orders, Admin)
	if d.Allowed || !strings.Contains(d.Reason, "requires MFA") || !strings.Contains(d.Reason, "prod-admin") {
		t.Fatalf("admin without MFA: %+v", d)
	}
	dba.MFA = true
	if d := p.Decide(dba, orders, Admin); !d.Allowed || d.Grant.PermissionSet.Name != "prod-admin" {
		t.Fatalf("admin with MFA: %+v", d)
	}
	both := person("bea", "dba", "analysts")
	if d := p.Decide(both, orders, ReadOnly); !d.Allowed || d.Grant.PermissionSet.Name != "db-readonly" {
		t.Fatalf("read-only through a set without MFA: %+v", d)
	}
	if d := p.Decide(both, orders, ReadWrite); d.Allowed || !strings.Contains(d.Reason, "requires MFA") {
		t.Fatalf("read-write that only the MFA set covers: %+v", d)
	}
}
