package access

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
)

// The property tests draw random people, groups, tags, permission sets
// (with conditions), assignments (by name, "*" and tag selector) and deny
// rules, and check Decide against a reference evaluator written here from
// the rules as the README states them, independently of the parser, the
// Cedar compilation, the index and the explanations.

// refCond is a condition as the generator draws it.
type refCond struct {
	op    string // ==, !=, in, not in, has, not has
	left  refOperand
	right refOperand
	list  []string
	text  string
}

type refOperand struct {
	entity string // "database", "person" or "" for a value
	key    string // tag key, or the value
}

func (o refOperand) value(person, db map[string]string) (string, bool) {
	switch o.entity {
	case "database":
		v, ok := db[o.key]
		return v, ok
	case "person":
		v, ok := person[o.key]
		return v, ok
	}
	return o.key, true
}

func (o refOperand) text() string {
	if o.entity == "" {
		return strconv.Quote(o.key)
	}
	return o.entity + "." + o.key
}

// holds is the rule: a missing tag makes a comparison false; has tests for
// the tag.
func (c refCond) holds(person, db map[string]string) bool {
	l, lok := c.left.value(person, db)
	switch c.op {
	case "has":
		return lok
	case "not has":
		return !lok
	case "in":
		return lok && slices.Contains(c.list, l)
	case "not in":
		return lok && !slices.Contains(c.list, l)
	}
	r, rok := c.right.value(person, db)
	if !lok || !rok {
		return false
	}
	if c.op == "==" {
		return l == r
	}
	return l != r
}

type refSet struct {
	PermissionSet
	conds []refCond
}

type refDeny struct {
	Deny
	conds []refCond
}

type world struct {
	sets        []refSet
	assignments []Assignment
	denies      []refDeny
	rules       Rules
}

var (
	propKeys   = []string{"env", "team", "tier"}
	propValues = []string{"prod", "dev", "a", "b"}
	propGroups = []string{"g0", "g1", "g2", "g3", "g4"}
	propDBs    = []string{"orders", "billing", "crm", "ledger"}
)

func drawTags(r *rand.Rand) map[string]string {
	m := map[string]string{}
	for _, k := range propKeys {
		if r.IntN(3) != 0 {
			m[k] = propValues[r.IntN(len(propValues))]
		}
	}
	return m
}

func drawOperand(r *rand.Rand, ref bool) refOperand {
	if !ref {
		return refOperand{key: propValues[r.IntN(len(propValues))]}
	}
	return refOperand{entity: []string{"database", "person"}[r.IntN(2)], key: propKeys[r.IntN(len(propKeys))]}
}

func drawCond(r *rand.Rand) refCond {
	c := refCond{op: []string{"==", "!=", "in", "not in", "has", "not has"}[r.IntN(6)]}
	c.left = drawOperand(r, true)
	switch c.op {
	case "has", "not has":
		c.text = c.op + " " + c.left.text()
	case "in", "not in":
		for range 1 + r.IntN(3) {
			c.list = append(c.list, propValues[r.IntN(len(propValues))])
		}
		var q []string
		for _, v := range c.list {
			q = append(q, strconv.Quote(v))
		}
		c.text = c.left.text() + " " + c.op + " [" + strings.Join(q, ", ") + "]"
	default:
		c.right = drawOperand(r, r.IntN(2) == 0)
		if r.IntN(2) == 0 {
			c.left, c.right = c.right, c.left
			if c.left.entity == "" && c.right.entity == "" {
				c.right = drawOperand(r, true)
			}
		}
		c.text = c.left.text() + " " + c.op + " " + c.right.text()
	}
	return c
}

func drawConds(t *testing.T, r *rand.Rand, max int) ([]refCond, Conditions) {
	var cs []refCond
	var srcs []string
	for range r.IntN(max + 1) {
		c := drawCond(r)
		cs = append(cs, c)
		srcs = append(srcs, c.text)
	}
	parsed, err := ParseConditions(srcs...)
	if err != nil {
		t.Fatalf("drawn conditions %q: %v", srcs, err)
	}
	return cs, parsed
}

// drawTarget picks databases by name, "*", or a tag selector.
func drawTarget(r *rand.Rand) ([]string, map[string]string) {
	switch r.IntN(4) {
	case 0:
		return []string{AllDatabases}, nil
	case 1:
		sel := map[string]string{}
		for range 1 + r.IntN(2) {
			sel[propKeys[r.IntN(len(propKeys))]] = propValues[r.IntN(len(propValues))]
		}
		return nil, sel
	}
	var names []string
	for _, d := range propDBs {
		if r.IntN(3) == 0 {
			names = append(names, d)
		}
	}
	if len(names) == 0 {
		names = []string{propDBs[r.IntN(len(propDBs))]}
	}
	return names, nil
}

func drawWorld(t *testing.T, r *rand.Rand) *world {
	w := &world{}
	for i := range 1 + r.IntN(5) {
		s := refSet{PermissionSet: PermissionSet{
			Name:       fmt.Sprintf("set%d", i),
			Level:      Levels[r.IntN(len(Levels))],
			TokenTTL:   time.Duration(1+r.IntN(60)) * time.Minute,
			RequireMFA: r.IntN(5) == 0,
		}}
		s.conds, s.Conditions = drawConds(t, r, 2)
		w.sets = append(w.sets, s)
		w.rules.PermissionSets = append(w.rules.PermissionSets, s.PermissionSet)
	}
	for range r.IntN(7) {
		a := Assignment{Group: propGroups[r.IntN(len(propGroups))], PermissionSet: w.sets[r.IntN(len(w.sets))].Name}
		a.Databases, a.DatabaseTags = drawTarget(r)
		w.assignments = append(w.assignments, a)
	}
	w.rules.Assignments = w.assignments
	for i := range r.IntN(4) {
		d := refDeny{Deny: Deny{Description: fmt.Sprintf("deny number %d", i)}}
		if r.IntN(2) == 0 {
			d.Group = propGroups[r.IntN(len(propGroups))]
		}
		d.Databases, d.DatabaseTags = drawTarget(r)
		for _, l := range Levels {
			if r.IntN(4) == 0 {
				d.Levels = append(d.Levels, l)
			}
		}
		d.conds, d.Conditions = drawConds(t, r, 1)
		w.denies = append(w.denies, d)
		w.rules.Denies = append(w.rules.Denies, d.Deny)
	}
	return w
}

func drawPerson(r *rand.Rand) identity.Principal {
	pr := identity.Principal{UserName: fmt.Sprintf("u%d", r.IntN(20)), Active: r.IntN(8) != 0, MFA: r.IntN(2) == 0, Attributes: drawTags(r)}
	for _, g := range propGroups {
		if r.IntN(3) == 0 {
			pr.Groups = append(pr.Groups, g)
		}
	}
	if len(pr.Groups) > 0 && r.IntN(5) == 0 {
		pr.Groups = append(pr.Groups, pr.Groups[0]) // asserted at sign-in as well
	}
	return pr
}

func refTargets(names []string, sel map[string]string, db Database) bool {
	if len(sel) > 0 {
		for k, v := range sel {
			if got, ok := db.Tags[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
	return slices.Contains(names, AllDatabases) || slices.Contains(names, db.Name)
}

func refAll(cs []refCond, pr identity.Principal, db Database) bool {
	for _, c := range cs {
		if !c.holds(pr.Attributes, db.Tags) {
			return false
		}
	}
	return true
}

// refDenies lists the deny rules that apply: group (or everyone), target,
// a denied level at or below the one asked for, and conditions.
func (w *world) refDenies(pr identity.Principal, db Database, want Level) []int {
	var out []int
	for i, d := range w.denies {
		levelDenied := len(d.Levels) == 0
		for _, l := range d.Levels {
			if want.Covers(l) {
				levelDenied = true
			}
		}
		if (d.Group == "" || pr.InGroup(d.Group)) && refTargets(d.Databases, d.DatabaseTags, db) && levelDenied && refAll(d.conds, pr, db) {
			out = append(out, i)
		}
	}
	return out
}

// refGrants lists the assignments that allow the request on their own.
func (w *world) refGrants(pr identity.Principal, db Database, want Level) []int {
	var out []int
	for i, a := range w.assignments {
		s := w.set(a.PermissionSet)
		if pr.InGroup(a.Group) && refTargets(a.Databases, a.DatabaseTags, db) && s.Level.Covers(want) && (!s.RequireMFA || pr.MFA) && refAll(s.conds, pr, db) {
			out = append(out, i)
		}
	}
	return out
}

func (w *world) set(name string) refSet {
	for _, s := range w.sets {
		if s.Name == name {
			return s
		}
	}
	panic("no set " + name)
}

func TestDecideAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(20261123, 1))
	var allowed, denied, refused int
	for iter := range 600 {
		w := drawWorld(t, r)
		p := mustCompile(t, w.rules)
		ps := p.PolicySet()
		for range 30 {
			pr := drawPerson(r)
			db := Database{Name: propDBs[r.IntN(len(propDBs))], Tags: drawTags(r)}
			want := Levels[r.IntN(len(Levels))]
			d := p.Decide(pr, db, want)
			denies, grants := w.refDenies(pr, db, want), w.refGrants(pr, db, want)
			expect := pr.Active && len(denies) == 0 && len(grants) > 0
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("iteration %d: %s\nperson %+v\ndatabase %+v at %s\ndecision %+v\nrules %+v", iter, fmt.Sprintf(format, args...), pr, db, want, d, w.rules)
			}
			if d.Allowed != expect {
				fail("Allowed = %v, reference says %v (denies %v, grants %v)", d.Allowed, expect, denies, grants)
			}
			if u := unionAllows(ps, pr, db, want); u != d.Allowed {
				fail("Decide says %v, cedar.Authorize over every policy says %v", d.Allowed, u)
			}
			switch {
			case d.Allowed:
				allowed++
				// The explanation names a grant that really covers the request.
				var i int
				if _, err := fmt.Sscanf(d.Policy, "assignments[%d]", &i); err != nil || !slices.Contains(grants, i) {
					fail("allowed by %q, which is not one of the grants %v", d.Policy, grants)
				}
				a := w.assignments[i]
				s := w.set(a.PermissionSet)
				if d.Grant.Group != a.Group || d.Grant.PermissionSet.Name != s.Name || d.TokenTTL() != s.TokenTTL {
					fail("grant %+v does not match %s", d.Grant, d.Policy)
				}
				if !strings.HasPrefix(d.Reason, pr.UserName+" is in "+a.Group+" → "+s.Name+" ("+string(s.Level)+") on "+db.Name) {
					fail("reason %q does not name the grant", d.Reason)
				}
				if d.Condition != strings.Join(s.Conditions.Strings(), " and ") {
					fail("condition %q, want the set's %q", d.Condition, s.Conditions.Strings())
				}
				for _, c := range s.Conditions.Strings() {
					if !strings.Contains(d.Reason, c) {
						fail("reason %q does not name condition %s", d.Reason, c)
					}
				}
				// The most specific grant: lowest level, then shortest TTL.
				for _, j := range grants {
					o := w.set(w.assignments[j].PermissionSet)
					if o.Level.rank() < s.Level.rank() || (o.Level == s.Level && o.TokenTTL < s.TokenTTL) {
						fail("allowed through %s although %d is more specific", d.Policy, j)
					}
				}
			case pr.Active && len(denies) > 0:
				denied++
				// Deny wins, and the refusal names a deny rule that applies.
				var i int
				if _, err := fmt.Sscanf(d.Policy, "deny[%d]", &i); err != nil || !slices.Contains(denies, i) || i != denies[0] {
					fail("refused by %q, want the first deny that applies of %v", d.Policy, denies)
				}
				if d.Deny != w.denies[i].Description || !strings.Contains(d.Reason, strconv.Quote(w.denies[i].Description)) {
					fail("refusal does not name %q", w.denies[i].Description)
				}
			default:
				refused++
				if d.Deny != "" || d.Reason == "" || d.Grant != (Grant{}) {
					fail("a refusal by no rule: deny %q, reason %q", d.Deny, d.Reason)
				}
				if strings.Contains(d.Reason, "requires MFA") {
					// Only when an assignment would allow it with MFA.
					pr2 := pr
					pr2.MFA = true
					if !pr.Active || len(w.refGrants(pr2, db, want)) == 0 {
						fail("MFA named, but MFA would not help")
					}
				}
				if strings.Contains(d.Reason, "does not hold") {
					var i int
					if _, err := fmt.Sscanf(d.Policy, "assignments[%d]", &i); err != nil {
						fail("a failed condition without its assignment: %q", d.Policy)
					}
					a := w.assignments[i]
					s := w.set(a.PermissionSet)
					if !pr.InGroup(a.Group) || !s.Level.Covers(want) || !refTargets(a.Databases, a.DatabaseTags, db) || refAll(s.conds, pr, db) || !strings.Contains(d.Reason, d.Condition) {
						fail("the nearest miss %s is not one whose condition failed", d.Policy)
					}
					k := slices.Index(s.Conditions.Strings(), d.Condition)
					if k < 0 || s.conds[k].holds(pr.Attributes, db.Tags) {
						fail("condition %q is not one of %s's that fails", d.Condition, s.Name)
					}
				}
			}
			// Nothing is granted without an assignment: LeastLevel comes
			// from a grant that covers it, and is allowed unless it is the
			// lowest grant's own level, kept for the refusal's reason.
			if l, ok := p.LeastLevel(pr, db); ok {
				g := p.Grants(pr, db)
				if len(g) == 0 || !g[len(g)-1].PermissionSet.Level.Covers(l) {
					fail("LeastLevel %s without a grant that covers it: %+v", l, g)
				}
				if !p.Decide(pr, db, l).Allowed && g[0].PermissionSet.Level != l {
					fail("LeastLevel %s is neither allowed nor the lowest grant's level: %+v", l, g)
				}
			}
			for _, g := range p.Grants(pr, db) {
				if !pr.InGroup(g.Group) {
					fail("grant %+v through a group the person is not in", g)
				}
			}
		}
	}
	t.Logf("%d allowed, %d refused by a deny rule, %d refused for want of a grant", allowed, denied, refused)
	if allowed < 500 || denied < 200 || refused < 2000 {
		t.Errorf("the draw is lopsided: %d allowed, %d denied, %d refused", allowed, denied, refused)
	}
}

// TestNoAssignmentNoAccess: with any permission sets, deny rules and
// people, but no assignment, nothing is ever allowed.
func TestNoAssignmentNoAccess(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for range 200 {
		w := drawWorld(t, r)
		w.rules.Assignments = nil
		p := mustCompile(t, w.rules)
		for range 20 {
			pr := drawPerson(r)
			db := Database{Name: propDBs[r.IntN(len(propDBs))], Tags: drawTags(r)}
			for _, l := range Levels {
				if d := p.Decide(pr, db, l); d.Allowed {
					t.Fatalf("allowed without an assignment: %+v", d)
				}
			}
			if _, ok := p.LeastLevel(pr, db); ok {
				t.Fatal("LeastLevel found a level without an assignment")
			}
		}
	}
}

// TestDenyAlwaysWins: adding a deny rule that matches the request refuses
// it, whatever else the policy holds.
func TestDenyAlwaysWins(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	for range 300 {
		w := drawWorld(t, r)
		pr := drawPerson(r)
		pr.Active = true
		db := Database{Name: propDBs[r.IntN(len(propDBs))], Tags: drawTags(r)}
		want := Levels[r.IntN(len(Levels))]
		// Grant everything to everyone, then deny this one request.
		w.rules.PermissionSets = append(w.rules.PermissionSets, PermissionSet{Name: "everything", Level: Admin})
		for _, g := range propGroups {
			w.rules.Assignments = append(w.rules.Assignments, Assignment{Group: g, PermissionSet: "everything", Databases: []string{AllDatabases}})
		}
		pr.Groups = append(pr.Groups, propGroups[0])
		deny := Deny{Description: "this one", Databases: []string{db.Name}, Levels: []Level{want}}
		if r.IntN(2) == 0 {
			deny.Group = pr.Groups[r.IntN(len(pr.Groups))]
		}
		w.rules.Denies = append(w.rules.Denies, deny)
		p := mustCompile(t, w.rules)
		d := p.Decide(pr, db, want)
		if d.Allowed || d.Deny == "" {
			t.Fatalf("the deny did not win: %+v\nrules %+v", d, w.rules)
		}
	}
}
