package access

import (
	"iter"
	"slices"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// An index files the policies by the requests they can apply to, so that
// a decision evaluates only the policies that could match instead of all of
// them.
//
// People's only parents are their groups; groups, actions and databases
// have none. So a policy whose principal scope is "principal in
// Keygate::Group::G" can only be satisfied by a member of G, and one with
// "principal == Keygate::Person::P" only by P; a policy with "action == A"
// only by a request for A; one with "resource == Keygate::Database::D" only
// by a request for D. A compiled rule knows more than its scope says: an
// assignment to several databases applies only to those, and one with a
// tag selector only to databases that carry its first tag. Evaluating the
// policies that can apply to the request is therefore the same as
// evaluating the union, with the same Cedar semantics: any satisfied forbid
// refuses, otherwise any satisfied permit allows.
type index struct {
	byGroup  map[string]*byLevel
	byPerson map[string]*byLevel
	always   byLevel
	// ordered holds, for byGroup and byPerson, the same policies as
	// pointers, most specific permits first; see finish.
	ordered map[*byLevel]*[3][]*filed
}

// byLevel holds filed policies per level, indexed by the level's rank.
type byLevel [3][]filed

// filed is a policy with the databases it can apply to.
type filed struct {
	indexed
	// name is the one database the policy applies to; tag, when name is
	// empty, a tag the database must carry; neither: any database.
	name string
	tag  tag
}

type tag struct{ key, value string }

// indexed is a policy, its id and what authorize needs to know of it.
type indexed struct {
	id     cedar.PolicyID
	policy *cedar.Policy
	rank   int // permits: lower is more specific
	forbid bool
}

func (f *filed) matches(db Database) bool {
	switch {
	case f.name != "":
		return f.name == db.Name
	case f.tag.key != "":
		v, ok := db.Tags[f.tag.key]
		return ok && v == f.tag.value
	}
	return true
}

// scope says which requests a policy can apply to.
type scope struct {
	// group or person limit the principal; both empty: anyone.
	group, person string
	levels        []Level
	// names limits the database to these; tag, when names is empty, to
	// those that carry it; neither: any database.
	names []string
	tag   *tag
}

func newIndex() index {
	return index{byGroup: map[string]*byLevel{}, byPerson: map[string]*byLevel{}}
}

func (x *index) add(e indexed, s scope) {
	var fs []filed
	switch {
	case len(s.names) > 0:
		for _, n := range slices.Compact(slices.Sorted(slices.Values(s.names))) {
			fs = append(fs, filed{indexed: e, name: n})
		}
	case s.tag != nil:
		fs = []filed{{indexed: e, tag: *s.tag}}
	default:
		fs = []filed{{indexed: e}}
	}
	ls := &x.always
	switch {
	case s.group != "":
		ls = getLevels(x.byGroup, s.group)
	case s.person != "":
		ls = getLevels(x.byPerson, s.person)
	}
	for _, l := range slices.Compact(slices.Sorted(slices.Values(s.levels))) {
		ls[l.rank()] = append(ls[l.rank()], fs...)
	}
}

func getLevels(m map[string]*byLevel, k string) *byLevel {
	ls := m[k]
	if ls == nil {
		ls = &byLevel{}
		m[k] = ls
	}
	return ls
}

// finish readies the index for decisions once every policy is filed: it
// lists each group's and person's policies in order, so that gathering a
// person's is a copy, or nothing for a person in one group.
func (x *index) finish() {
	x.ordered = map[*byLevel]*[3][]*filed{}
	for _, m := range []map[string]*byLevel{x.byGroup, x.byPerson} {
		for _, ls := range m {
			var o [3][]*filed
			for r := range ls {
				for i := range ls[r] {
					o[r] = append(o[r], &ls[r][i])
				}
				slices.SortFunc(o[r], byRank)
			}
			x.ordered[ls] = &o
		}
	}
}

func byRank(a, b *filed) int { return a.rank - b.rank }

// personal gathers, per level, the policies filed for user and their
// groups, which must be without repeats; the most specific permits come
// first. The lists may be the index's own: they are not to be changed.
func (x *index) personal(user string, groups []string) [3][]*filed {
	var sources []*[3][]*filed
	if ls := x.byPerson[user]; ls != nil {
		sources = append(sources, x.ordered[ls])
	}
	for _, g := range groups {
		if ls := x.byGroup[g]; ls != nil {
			sources = append(sources, x.ordered[ls])
		}
	}
	switch len(sources) {
	case 0:
		return [3][]*filed{}
	case 1:
		return *sources[0]
	}
	var out [3][]*filed
	for r := range out {
		for _, o := range sources {
			out[r] = append(out[r], o[r]...)
		}
		slices.SortFunc(out[r], byRank)
	}
	return out
}

// scopeOf reads a policy's scope from its Cedar text, for policies from
// Cedar files.
func scopeOf(p *cedar.Policy) scope {
	var s scope
	pol := (*xast.Policy)(p.AST())
	switch ps := pol.Principal.(type) {
	case xast.ScopeTypeIn:
		s.group = groupOf(ps.Entity)
		s.person = personOf(ps.Entity)
	case xast.ScopeTypeIsIn:
		if ps.Type == PersonType {
			s.group = groupOf(ps.Entity)
			s.person = personOf(ps.Entity)
		}
	case xast.ScopeTypeEq:
		s.person = personOf(ps.Entity)
	}
	switch as := pol.Action.(type) {
	case xast.ScopeTypeEq:
		s.levels = actionLevels(as.Entity)
	case xast.ScopeTypeIn:
		s.levels = actionLevels(as.Entity)
	case xast.ScopeTypeInSet:
		for _, a := range as.Entities {
			s.levels = append(s.levels, actionLevels(a)...)
		}
	default:
		s.levels = Levels
	}
	switch rs := pol.Resource.(type) {
	case xast.ScopeTypeEq:
		s.names = databaseOf(rs.Entity)
	case xast.ScopeTypeIn:
		s.names = databaseOf(rs.Entity)
	case xast.ScopeTypeIsIn:
		if rs.Type == DatabaseType {
			s.names = databaseOf(rs.Entity)
		}
	}
	return s
}

// groupOf, personOf and databaseOf return the id of an entity of their
// type, or nothing. A policy whose scope names an entity of another type
// is filed for everyone, which costs time, never correctness.
func groupOf(e types.EntityUID) string {
	if e.Type == GroupType && e.ID != "" {
		return string(e.ID)
	}
	return ""
}

func personOf(e types.EntityUID) string {
	if e.Type == PersonType && e.ID != "" {
		return string(e.ID)
	}
	return ""
}

func databaseOf(e types.EntityUID) []string {
	if e.Type == DatabaseType && e.ID != "" {
		return []string{string(e.ID)}
	}
	return nil
}

// actionLevels is the level an action entity stands for, if any. An
// action that is no level matches no request: its policy is filed nowhere.
func actionLevels(a types.EntityUID) []Level {
	if a.Type == ActionType && Level(a.ID).rank() >= 0 {
		return []Level{Level(a.ID)}
	}
	return nil
}

// selection is the policies that can apply to one request, and room for
// what authorize hands Cedar, so that a decision allocates little. It is a
// cedar.PolicyIterator over the policies of the current round.
type selection struct {
	forbids, permits []indexed
	ents             entities
	round            round
	all              iter.Seq2[cedar.PolicyID, *cedar.Policy]
}

// round is the policies of one cedar.Authorize call.
type round struct{ a, b []indexed }

// selectionPool recycles selections: a decision is made on every token
// request and connection, and the selection is garbage as soon as Cedar
// has run over it.
var selectionPool = sync.Pool{New: func() any {
	s := new(selection)
	s.all = func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, l := range [2][]indexed{s.round.a, s.round.b} {
			for _, e := range l {
				if !yield(e.id, e.policy) {
					return
				}
			}
		}
	}
	return s
}}

// All yields the policies of the current round.
func (s *selection) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] { return s.all }

// selectFor picks the policies of x.always and of the person's own that
// apply to db at level want, the most specific permits first.
func (x *index) selectFor(personal []*filed, want Level, db Database) *selection {
	s := selectionPool.Get().(*selection)
	s.forbids, s.permits = s.forbids[:0], s.permits[:0]
	take := func(f *filed) {
		switch {
		case !f.matches(db):
		case f.forbid:
			s.forbids = append(s.forbids, f.indexed)
		default:
			s.permits = append(s.permits, f.indexed)
		}
	}
	for _, f := range personal {
		take(f)
	}
	// The person's own permits are in order; those filed for everyone
	// (rare: Cedar file policies, rules for the group "") are merged in.
	n := len(s.permits)
	always := x.always[want.rank()]
	for i := range always {
		take(&always[i])
	}
	if len(s.permits) > n {
		slices.SortStableFunc(s.permits, func(a, b indexed) int { return a.rank - b.rank })
	}
	return s
}

// release returns s to the pool.
func (s *selection) release() {
	s.ents, s.round = entities{}, round{}
	if cap(s.forbids)+cap(s.permits) <= 4096 {
		selectionPool.Put(s)
	}
}
