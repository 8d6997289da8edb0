package access

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
)

// Decisions are made by Cedar (https://www.cedarpolicy.com). Permission sets,
// assignments and deny rules compile to Cedar policies, a policy file adds
// policies written in Cedar directly, and every decision is one Cedar
// request:
//
//	principal  Keygate::Person::"<user name>"
//	action     Keygate::Action::"ro", "rw" or "admin"
//	resource   Keygate::Database::"<database name>"
//	context    {}
//
// A Person is in one Keygate::Group::"<group name>" per group they belong
// to, carries their principal tags as Cedar entity tags (strings), and has
// one attribute, mfa (Bool), which is true when their sign-in used
// multi-factor authentication. A Database carries its configured tags as
// entity tags. The actions are flat (ro is not in rw), so that "action in
// [...]" in a policy file means exactly the levels listed.
//
// Each assignment becomes one permit per level its permission set covers
// (an rw set: ro and rw):
//
//	@id("assignments[N]/rw")
//	permit (principal in Keygate::Group::"G",
//	        action == Keygate::Action::"rw",
//	        resource ...)      // == one database; or is Keygate::Database, with a when for several names or a tag selector
//	when { principal.mfa }  // if the set requires MFA
//	when { ... };           // one per condition, each tag read behind hasTag
//
// and each deny rule one forbid per level it refuses, @id("deny[N]/LEVEL").
// CedarSchema is the model in Cedar's schema language; policy files are
// validated against it.
const CedarSchema = `namespace Keygate {
  entity Group;
  entity Person in [Group] { mfa: Bool } tags String;
  entity Database tags String;
  action "ro", "rw", "admin" appliesTo { principal: Person, resource: Database, context: {} };
}
`

// The entity types of the model.
const (
	PersonType   types.EntityType = "Keygate::Person"
	GroupType    types.EntityType = "Keygate::Group"
	DatabaseType types.EntityType = "Keygate::Database"
	ActionType   types.EntityType = "Keygate::Action"
)

func personUID(name string) types.EntityUID {
	return types.NewEntityUID(PersonType, types.String(name))
}
func groupUID(name string) types.EntityUID { return types.NewEntityUID(GroupType, types.String(name)) }
func databaseUID(name string) types.EntityUID {
	return types.NewEntityUID(DatabaseType, types.String(name))
}
func actionUID(l Level) types.EntityUID { return types.NewEntityUID(ActionType, types.String(l)) }

// resolvedSchema is CedarSchema, parsed once.
var resolvedSchema = sync.OnceValue(func() *resolved.Schema {
	var s schema.Schema
	if err := s.UnmarshalCedar([]byte(CedarSchema)); err != nil {
		panic("access: CedarSchema does not parse: " + err.Error())
	}
	r, err := s.Resolve()
	if err != nil {
		panic("access: CedarSchema does not resolve: " + err.Error())
	}
	return r
})

// Rule ids of compiled rules are the YAML path of the rule, so that an
// explanation points at the line to read. A rule compiles to one policy per
// level, whose id is the rule's with "/LEVEL" appended.
func assignmentID(i int) string { return fmt.Sprintf("assignments[%d]", i) }
func denyID(i int) string       { return fmt.Sprintf("deny[%d]", i) }

// reservedID reports whether id belongs to the compiled rules' namespace,
// which a policy file may not use: a group created later must never find
// its derived rule's id taken.
func reservedID(id string) bool {
	for _, prefix := range []string{"assignments[", "deny[", "group_naming["} {
		if strings.HasPrefix(id, prefix) {
			return true
		}
	}
	return false
}

// denied lists the levels a deny on ls refuses: each of ls and every level
// above it, since a higher level includes the lower one's privileges. No
// levels means all of them.
func denied(ls []Level) []Level {
	if len(ls) == 0 {
		return slices.Clone(Levels)
	}
	var out []Level
	for _, x := range Levels {
		for _, l := range ls {
			if x.Covers(l) {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// target constrains a policy's resource to database names ("*" for all)
// or to databases whose tags match a selector.
func target(p *ast.Policy, names []string, tags map[string]string) *ast.Policy {
	if len(tags) > 0 {
		return p.ResourceIs(DatabaseType).When(selector(tags))
	}
	if slices.Contains(names, AllDatabases) {
		return p.ResourceIs(DatabaseType)
	}
	uniq := slices.Compact(slices.Sorted(slices.Values(names)))
	if len(uniq) == 1 {
		return p.ResourceEq(databaseUID(uniq[0]))
	}
	// resource == A || resource == B rather than resource in [A, B]:
	// cedar-go builds a set for "in" on every evaluation.
	var any ast.Node
	for i, n := range uniq {
		e := ast.Resource().Equal(ast.Value(databaseUID(n)))
		if i == 0 {
			any = e
		} else {
			any = any.Or(e)
		}
	}
	return p.ResourceIs(DatabaseType).When(any)
}

// targetScope is what the index needs to know of a target.
func targetScope(s scope, names []string, tags map[string]string) scope {
	switch {
	case len(tags) > 0:
		k := slices.Min(slices.Collect(maps.Keys(tags)))
		s.tag = &tag{k, tags[k]}
	case !slices.Contains(names, AllDatabases):
		s.names = names
	}
	return s
}

// selector is a tag selector's expression: every tag present with the
// value given.
func selector(tags map[string]string) ast.Node {
	var out ast.Node
	for i, k := range slices.Sorted(maps.Keys(tags)) {
		e := ast.Resource().HasTag(ast.String(k)).And(ast.Resource().GetTag(ast.String(k)).Equal(ast.String(tags[k])))
		if i == 0 {
			out = e
		} else {
			out = out.And(e)
		}
	}
	return out
}

// cedar is the condition's Cedar expression. Every tag it reads is guarded
// by hasTag, so a missing tag makes it false rather than an error (which
// Cedar would treat as "policy does not apply", true for a forbid as well).
func (c Condition) cedar() ast.Node {
	entity := func(o operand) ast.Node {
		if o.src == databaseTag {
			return ast.Resource()
		}
		return ast.Principal()
	}
	has := func(o operand) ast.Node { return entity(o).HasTag(ast.String(o.value)) }
	val := func(o operand) ast.Node {
		if !o.isRef() {
			return ast.String(o.value)
		}
		return entity(o).GetTag(ast.String(o.value))
	}
	switch c.op {
	case opHas:
		return has(c.left)
	case opNotHas:
		return ast.Not(has(c.left))
	case opIn, opNotIn:
		vals := make([]ast.Node, len(c.list))
		for i, v := range c.list {
			vals[i] = ast.String(v)
		}
		in := ast.Set(vals...).Contains(val(c.left))
		if c.op == opNotIn {
			in = ast.Not(in)
		}
		return has(c.left).And(in)
	}
	cmp := val(c.left).Equal(val(c.right))
	if c.op == opNotEqual {
		cmp = val(c.left).NotEqual(val(c.right))
	}
	for _, o := range slices.Backward(c.refs()) {
		cmp = has(o).And(cmp)
	}
	return cmp
}

// compiled is one Cedar policy, its id and the requests it can apply to.
type compiled struct {
	id     cedar.PolicyID
	policy *cedar.Policy
	scope  scope
}

// permits compiles assignment a of permission set s: one policy per level
// the set covers, so that each names its action with ==.
func permits(rule string, a Assignment, s PermissionSet, conds []Condition) []compiled {
	var out []compiled
	for _, l := range Levels {
		if !s.Level.Covers(l) {
			continue
		}
		id := cedar.PolicyID(rule + "/" + string(l))
		p := ast.Annotation("id", types.String(id)).Permit().
			PrincipalIn(groupUID(a.Group)).
			ActionEq(actionUID(l))
		p = target(p, a.Databases, a.DatabaseTags)
		if s.RequireMFA {
			p = p.When(ast.Principal().Access("mfa"))
		}
		for _, c := range conds {
			p = p.When(c.cedar())
		}
		sc := targetScope(scope{group: a.Group, levels: []Level{l}}, a.Databases, a.DatabaseTags)
		out = append(out, compiled{id, cedar.NewPolicyFromAST(p), sc})
	}
	return out
}

// forbids compiles deny rule d: one policy per level it refuses.
func forbids(rule string, d Deny, conds []Condition) []compiled {
	var out []compiled
	for _, l := range denied(d.Levels) {
		id := cedar.PolicyID(rule + "/" + string(l))
		p := ast.Annotation("id", types.String(id)).Annotation("description", types.String(d.Description)).Forbid()
		if d.Group != "" {
			p = p.PrincipalIn(groupUID(d.Group))
		}
		p = target(p.ActionEq(actionUID(l)), d.Databases, d.DatabaseTags)
		for _, c := range conds {
			p = p.When(c.cedar())
		}
		sc := targetScope(scope{group: d.Group, levels: []Level{l}}, d.Databases, d.DatabaseTags)
		out = append(out, compiled{id, cedar.NewPolicyFromAST(p), sc})
	}
	return out
}
