// Package access decides who may reach which database at which level. It is
// the only place where that decision is made: the token endpoint asks it before
// minting, the gateway asks it again at connect time and again whenever the
// person's groups change. It is pure: no I/O, no clock, no globals.
//
// The rules are permission sets (a level and its terms, with attribute
// conditions), assignments of permission sets to groups on databases, and
// deny rules that always win. They compile to Cedar policies, which make
// every decision; see CedarSchema for the model.
package access

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/keygate/keygate/identity"
)

// Level is an access level on a database. Levels are ordered: a grant at one
// level covers every lower level.
type Level string

// The access levels, from least to most privilege.
const (
	ReadOnly  Level = "ro"    // SELECT
	ReadWrite Level = "rw"    // SELECT, INSERT, UPDATE, DELETE
	Admin     Level = "admin" // rw plus schema changes
)

// Levels lists the access levels from least to most privilege.
var Levels = []Level{ReadOnly, ReadWrite, Admin}

// ParseLevel parses "ro", "rw" or "admin".
func ParseLevel(s string) (Level, error) {
	l := Level(s)
	if l.rank() < 0 {
		return "", fmt.Errorf("unknown access level %q: use ro, rw or admin", s)
	}
	return l, nil
}

func (l Level) rank() int { return slices.Index(Levels, l) }

// Covers reports whether a grant at level l allows a session at level want.
func (l Level) Covers(want Level) bool {
	return l.rank() >= 0 && want.rank() >= 0 && l.rank() >= want.rank()
}

// DefaultTokenTTL is how long a database token lives unless a permission set
// says otherwise; MaxTokenTTL is the longest any permission set may ask for.
const (
	DefaultTokenTTL = 15 * time.Minute
	MaxTokenTTL     = time.Hour
)

// MinSessionDuration and MaxSessionDuration bound a permission set's
// SessionDuration.
const (
	MinSessionDuration = time.Minute
	MaxSessionDuration = 24 * time.Hour
)

// PermissionSet names an access level and the terms that come with it. It
// is a value: two sets compare equal with == when every term is the same.
type PermissionSet struct {
	Name string
	// Description says what the set is for, to people reading the config
	// and the explanations of decisions.
	Description string
	Level       Level
	TokenTTL    time.Duration
	// SessionDuration is the longest a database session opened under the
	// set may last, as an IAM Identity Center permission set's session
	// duration bounds a console session; zero for no limit. The gateway
	// enforces it, since only the gateway sees sessions; here it is only
	// bounded.
	SessionDuration time.Duration
	// RequireMFA grants the set only to a person whose sign-in used
	// multi-factor authentication at the identity provider.
	RequireMFA bool
	// Conditions must all hold, for the person and the database at hand,
	// for the set to grant anything.
	Conditions Conditions
}

// AllDatabases is the database pattern that an assignment uses to cover every
// configured database.
const AllDatabases = "*"

// Assignment grants a group a permission set on some databases: those named
// in Databases ("*" for all), or those whose tags match DatabaseTags.
type Assignment struct {
	Group         string
	PermissionSet string
	Databases     []string
	// DatabaseTags selects databases by tag instead of by name: every tag
	// given must be present on the database with the value given.
	DatabaseTags map[string]string
	// ID names the assignment in decisions (Decision.Policy) and in its
	// Cedar policies' ids. Empty means its place in Rules.Assignments,
	// "assignments[N]", which is the config line that wrote it; an
	// assignment the config does not spell out, such as one the group
	// naming rule derives, names itself instead.
	ID string
}

// Deny refuses access whatever any assignment or policy allows: deny rules
// always win.
type Deny struct {
	// Description is what a refused person is shown.
	Description string
	// Group limits the rule to the group's members; empty applies it to
	// everyone.
	Group string
	// Databases names the databases the rule covers ("*" for all);
	// DatabaseTags selects them by tag instead.
	Databases    []string
	DatabaseTags map[string]string
	// Levels are the levels refused, each with every level above it, since
	// those include its privileges: [rw] refuses rw and admin. Empty
	// refuses every level.
	Levels []Level
	// Conditions must all hold for the rule to apply.
	Conditions Conditions
}

// Database is a database as the decision sees it.
type Database struct {
	Name string
	Tags map[string]string
}

// Rules is everything a Policy is built from.
type Rules struct {
	PermissionSets []PermissionSet
	Assignments    []Assignment
	Denies         []Deny
	Cedar          []CedarFile
}

// Policy is the whole set of rules, compiled. It is immutable once built; a
// config reload builds a new one.
type Policy struct {
	assignments []assignment
	// byGroup lists the assignments of each group, by index.
	byGroup map[string][]int
	// rank is each assignment's place in the order Grants lists them.
	rank []int
	// ranked is byGroup with each group's assignments most specific first.
	ranked map[string][]int
	denies []deny
	raw    []rawPolicy
	// rules says what each Cedar policy id stands for.
	rules map[cedar.PolicyID]ruleRef
	index index
	// all is every policy in the order compiled.
	all   []compiled
	cache cache
}

// assignment is an Assignment with its permission set and rule id.
type assignment struct {
	Assignment
	id    string
	set   PermissionSet
	conds []Condition
	// selector is DatabaseTags sorted by key, cheaper to test than the
	// map.
	selector []tag
	// grant, tagText and condText are the assignment as explanations
	// write it: "group → set (level)", "k=v, k2=v2" for DatabaseTags, and
	// the conditions joined by " and ".
	grant, tagText, condText string
}

type deny struct {
	Deny
	id      string
	conds   []Condition
	tagText string
	quoted  string // Description, quoted
}

type ruleKind int

const (
	ruleAssignment ruleKind = iota + 1
	ruleDeny
	ruleRaw
)

// ruleRef is a rule by kind and index into its slice of Policy.
type ruleRef struct {
	kind ruleKind
	i    int
}

// NewPolicy builds a policy from permission sets and assignments alone.
func NewPolicy(sets []PermissionSet, assignments []Assignment) (*Policy, error) {
	return Compile(Rules{PermissionSets: sets, Assignments: assignments})
}

// Compile checks the rules and compiles them to Cedar. Every assignment
// must name a known permission set, and the Cedar files must parse and
// validate against CedarSchema.
func Compile(r Rules) (*Policy, error) {
	sets := make(map[string]PermissionSet, len(r.PermissionSets))
	p := &Policy{
		byGroup: map[string][]int{},
		rules:   map[cedar.PolicyID]ruleRef{},
		index:   newIndex(),
	}
	conds := map[string][]Condition{}
	for _, s := range r.PermissionSets {
		if _, dup := sets[s.Name]; dup {
			return nil, fmt.Errorf("permission set %q is defined twice", s.Name)
		}
		if s.Level.rank() < 0 {
			return nil, fmt.Errorf("permission set %q: unknown access level %q", s.Name, s.Level)
		}
		if s.TokenTTL == 0 {
			s.TokenTTL = DefaultTokenTTL
		}
		if s.TokenTTL < time.Second || s.TokenTTL > MaxTokenTTL {
			return nil, fmt.Errorf("permission set %q: token_ttl %s is outside 1s..%s", s.Name, s.TokenTTL, MaxTokenTTL)
		}
		if d := s.SessionDuration; d != 0 && (d < MinSessionDuration || d > MaxSessionDuration) {
			return nil, fmt.Errorf("permission set %q: session_duration %s is outside %s..%s", s.Name, d, MinSessionDuration, MaxSessionDuration)
		}
		sets[s.Name] = s
		conds[s.Name] = s.Conditions.list()
	}
	ids := make(map[string]bool, len(r.Assignments))
	for i, a := range r.Assignments {
		s, ok := sets[a.PermissionSet]
		if !ok {
			return nil, fmt.Errorf("assignment for group %q names unknown permission set %q", a.Group, a.PermissionSet)
		}
		id := a.ID
		if id == "" {
			id = assignmentID(i)
		}
		if ids[id] {
			return nil, fmt.Errorf("assignment for group %q: rule id %q is used twice", a.Group, id)
		}
		ids[id] = true
		if len(a.Databases) > 0 && len(a.DatabaseTags) > 0 {
			return nil, fmt.Errorf("assignment for group %q: give databases or database_tags, not both", a.Group)
		}
		a.Databases = slices.Clone(a.Databases)
		a.DatabaseTags = cloneTags(a.DatabaseTags)
		p.assignments = append(p.assignments, assignment{
			Assignment: a, id: id, set: s, conds: conds[s.Name],
			selector: sortedTags(a.DatabaseTags),
			grant:    fmt.Sprintf("%s → %s (%s)", a.Group, s.Name, s.Level),
			tagText:  tagList(a.DatabaseTags), condText: joinConditions(conds[s.Name]),
		})
		p.byGroup[a.Group] = append(p.byGroup[a.Group], i)
	}
	// Permits are evaluated most specific first (see authorize), so each
	// is filed with its place in the order Grants lists them.
	order := make([]int, len(p.assignments))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, p.compare)
	p.rank = make([]int, len(order))
	for rank, i := range order {
		p.rank[i] = rank
	}
	for rank, i := range order {
		a := &p.assignments[i]
		if len(a.Databases) > 0 || len(a.DatabaseTags) > 0 {
			p.add(permits(a.id, a.Assignment, a.set, a.conds), ruleRef{ruleAssignment, i}, rank)
		}
	}
	for i, d := range r.Denies {
		if d.Description == "" {
			return nil, fmt.Errorf("deny rule %d has no description: it is what a refused person is shown", i+1)
		}
		if (len(d.Databases) > 0) == (len(d.DatabaseTags) > 0) {
			return nil, fmt.Errorf("deny rule %q: give either databases (\"*\" for all) or database_tags", d.Description)
		}
		for _, l := range d.Levels {
			if l.rank() < 0 {
				return nil, fmt.Errorf("deny rule %q: unknown access level %q", d.Description, l)
			}
		}
		d.Databases = slices.Clone(d.Databases)
		d.DatabaseTags = cloneTags(d.DatabaseTags)
		d.Levels = slices.Clone(d.Levels)
		c := deny{Deny: d, id: denyID(i), conds: d.Conditions.list(), tagText: tagList(d.DatabaseTags), quoted: strconv.Quote(d.Description)}
		p.denies = append(p.denies, c)
		p.add(forbids(c.id, d, c.conds), ruleRef{ruleDeny, i}, 0)
	}
	for _, f := range r.Cedar {
		raws, err := parseCedarFile(f)
		if err != nil {
			return nil, err
		}
		for _, rp := range raws {
			if _, dup := p.rules[rp.id]; dup {
				return nil, fmt.Errorf("%s: policy id %q is used twice", rp.at, rp.id)
			}
			p.raw = append(p.raw, rp)
			p.add([]compiled{{rp.id, rp.policy, scopeOf(rp.policy)}}, ruleRef{ruleRaw, len(p.raw) - 1}, len(p.assignments)+len(p.raw))
		}
	}
	p.index.finish()
	p.ranked = make(map[string][]int, len(p.byGroup))
	for g, as := range p.byGroup {
		p.ranked[g] = slices.SortedFunc(slices.Values(as), func(i, j int) int { return p.rank[i] - p.rank[j] })
	}
	return p, nil
}

// add files compiled policies of one rule; rank orders permits, most
// specific first.
func (p *Policy) add(cs []compiled, ref ruleRef, rank int) {
	for _, c := range cs {
		p.rules[c.id] = ref
		p.index.add(indexed{id: c.id, policy: c.policy, rank: rank, forbid: c.policy.Effect() == cedar.Forbid}, c.scope)
		p.all = append(p.all, c)
	}
}

// PolicySet is every policy the decision evaluates, compiled and from Cedar
// files, under its id: for printing the policy as Cedar, exporting it, and
// checking decisions against a plain cedar.Authorize over the whole set.
// Each call returns a new set.
func (p *Policy) PolicySet() *cedar.PolicySet {
	ps := cedar.NewPolicySet()
	for _, c := range p.all {
		ps.Add(c.id, c.policy)
	}
	return ps
}

func cloneTags(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Grant is one way a principal reaches a database: through a group, an
// assignment and its permission set.
type Grant struct {
	Group         string
	PermissionSet PermissionSet
}

// Decision is the answer to "may this person reach this database at this
// level", with what decided it.
type Decision struct {
	Allowed  bool
	User     string
	Database string
	Level    Level
	// Grant is the grant that allowed the request; zero when refused. A
	// permit from a Cedar file has no group, and a permission set named
	// after the policy, at the level asked for, with DefaultTokenTTL.
	Grant Grant
	// Reason is a sentence safe to show the person and to write to the audit
	// log: why the request was allowed or what is missing.
	Reason string
	// Policy is the id of the Cedar policy the decision rests on: the
	// permit that allowed it, the forbid that refused it, or, when no
	// policy applied, the assignment that came nearest. Compiled rules
	// are named by their place in the config, as in "assignments[2]" and
	// "deny[0]"; a Cedar file's by their @id or file:line. Empty when there
	// is nothing to point at.
	Policy string
	// Deny is the description of the deny rule (or Cedar forbid) that
	// refused the request; empty otherwise.
	Deny string
	// Condition is the condition text that mattered: the conditions that
	// held for the grant or deny rule that decided, joined by " and ", or
	// the condition that did not hold for the nearest miss.
	Condition string
}

// TokenTTL is how long a token minted on this decision may live.
func (d Decision) TokenTTL() time.Duration { return d.Grant.PermissionSet.TokenTTL }

// Grants lists every grant the principal holds on db through assignments,
// most specific first (lowest level, then shortest token lifetime, then
// name): assignments of their groups that cover db and whose permission
// set's conditions hold. A grant that requires MFA is listed whether or not
// the principal has it, and deny rules are not applied: Decide has the
// final word.
func (p *Policy) Grants(pr identity.Principal, db Database) []Grant {
	if !pr.Active {
		return nil
	}
	var out []Grant
	for _, i := range p.cache.person(pr, p).candidates {
		a := &p.assignments[i]
		if a.targets(db) && a.failing(pr, db) == nil {
			out = append(out, Grant{Group: a.Group, PermissionSet: a.set})
		}
	}
	return out
}

// LeastLevel is the lowest level the principal may use on db, for a token
// asked for without a level: least privilege by default. A grant covers
// every level below its own, so a person granted rw gets ro unless a rule
// refuses ro. When no level is allowed but the principal holds a grant (one
// that needs MFA, say, or is denied), it is that grant's level, so that
// Decide's refusal names what is missing. ok is false when they hold none.
func (p *Policy) LeastLevel(pr identity.Principal, db Database) (Level, bool) {
	if !pr.Active {
		return "", false
	}
	for _, l := range Levels {
		if ok, _, _ := p.authorize(pr, db, l); ok {
			return l, true
		}
	}
	if g := p.Grants(pr, db); len(g) > 0 {
		return g[0].PermissionSet.Level, true
	}
	return "", false
}

// Decide answers whether pr may reach db at level want.
func (p *Policy) Decide(pr identity.Principal, db Database, want Level) Decision {
	d := Decision{User: pr.UserName, Database: db.Name, Level: want}
	if want.rank() < 0 {
		d.Reason = fmt.Sprintf("unknown access level %q: use ro, rw or admin", want)
		return d
	}
	if !pr.Active {
		d.Reason = fmt.Sprintf("%s was disabled", pr.UserName)
		return d
	}
	allowed, reasons, person := p.authorize(pr, db, want)
	switch {
	case allowed:
		return p.explainAllow(d, pr, db, reasons)
	case len(reasons) > 0:
		return p.explainDeny(d, pr, db, reasons)
	}
	return p.explainMiss(d, pr, db, person)
}

// firstPermits is how many permits the first round of authorize evaluates.
const firstPermits = 4

// authorize asks Cedar, evaluating only the policies that can apply to the
// request. reasons are the permits that allowed, or the forbids that
// refused.
//
// Cedar's own Authorize evaluates every policy it is given; the answer
// needs only every forbid and the most specific satisfied permit. So the
// first round gives Cedar the forbids and the firstPermits most specific
// permits, and only when none of them is satisfied does a second round
// give it the other permits. The result is the same as one round over all:
// a satisfied forbid refuses, otherwise a satisfied permit allows.
func (p *Policy) authorize(pr identity.Principal, db Database, want Level) (bool, []cedar.DiagnosticReason, *cachedPerson) {
	person := p.cache.person(pr, p)
	sel := p.index.selectFor(person.personal[want.rank()], want, db)
	defer sel.release()
	if len(sel.forbids) == 0 && len(sel.permits) == 0 {
		// Cedar denies when no policy applies; no need to ask.
		return false, nil, person
	}
	req := request(&sel.ents, person, p.cache.database(db), want)
	k := min(len(sel.permits), firstPermits)
	sel.round = round{sel.forbids, sel.permits[:k]}
	dec, diag := cedar.Authorize(sel, &sel.ents, req)
	if dec == cedar.Allow || len(diag.Reasons) > 0 || k == len(sel.permits) {
		return dec == cedar.Allow, diag.Reasons, person
	}
	sel.round = round{sel.permits[k:], nil}
	dec, diag = cedar.Authorize(sel, &sel.ents, req)
	return dec == cedar.Allow, diag.Reasons, person
}

// candidates lists the indexes of the assignments of groups, which must be
// without repeats, most specific first. The list may be the policy's own:
// it is not to be changed.
func (p *Policy) candidates(groups []string) []int {
	var out []int
	n := 0
	for _, g := range groups {
		if l := p.ranked[g]; len(l) > 0 {
			out = l
			n++
		}
	}
	if n <= 1 {
		return out
	}
	out = nil
	for _, g := range groups {
		out = append(out, p.ranked[g]...)
	}
	slices.SortFunc(out, func(i, j int) int { return p.rank[i] - p.rank[j] })
	return out
}

// compare orders assignments as Grants lists them: lowest level, then
// shortest token lifetime, then permission set name, group and place in
// the config.
func (p *Policy) compare(i, j int) int {
	a, b := &p.assignments[i], &p.assignments[j]
	if c := a.set.Level.rank() - b.set.Level.rank(); c != 0 {
		return c
	}
	if c := cmp.Compare(a.set.TokenTTL, b.set.TokenTTL); c != 0 {
		return c
	}
	if c := cmp.Compare(a.set.Name, b.set.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Group, b.Group); c != 0 {
		return c
	}
	return i - j
}

// targets reports whether the assignment covers db, by name or by tags.
func (a *assignment) targets(db Database) bool {
	if len(a.selector) > 0 {
		for _, t := range a.selector {
			if v, ok := db.Tags[t.key]; !ok || v != t.value {
				return false
			}
		}
		return true
	}
	for _, d := range a.Databases {
		if d == AllDatabases || d == db.Name {
			return true
		}
	}
	return false
}

// sortedTags is tags as a slice sorted by key.
func sortedTags(tags map[string]string) []tag {
	var out []tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, tag{k, tags[k]})
	}
	return out
}

// failing returns the first of the assignment's conditions that does not
// hold for pr on db, or nil when all hold.
func (a *assignment) failing(pr identity.Principal, db Database) *Condition {
	for i := range a.conds {
		if !a.conds[i].holds(pr.Attributes, db.Tags) {
			return &a.conds[i]
		}
	}
	return nil
}
