package access

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"

	"github.com/keygate/keygate/identity"
)

// Explanations say, in one sentence, which rule decided and why, in the
// vocabulary of the config: groups, permission sets, tags and conditions.
// A refusal that no rule made names the nearest miss: the grant that would
// have allowed the request but for MFA, a condition or a tag.

// explainAllow names the most specific grant among the permits that
// allowed, or a Cedar file's permit when no assignment did.
func (p *Policy) explainAllow(d Decision, pr identity.Principal, db Database, reasons []cedar.DiagnosticReason) Decision {
	best, raw := -1, -1
	for _, r := range reasons {
		ref := p.rules[r.PolicyID]
		switch {
		case ref.kind == ruleAssignment && (best < 0 || p.rank[ref.i] < p.rank[best]):
			best = ref.i
		case ref.kind == ruleRaw && (raw < 0 || ref.i < raw):
			raw = ref.i
		}
	}
	d.Allowed = true
	if best < 0 {
		rp := p.raw[raw]
		d.Grant = Grant{PermissionSet: PermissionSet{Name: string(rp.id), Level: d.Level, TokenTTL: DefaultTokenTTL}}
		d.Policy = string(rp.id)
		d.Reason = pr.UserName + " is allowed " + string(d.Level) + " on " + db.Name + " by " + rp.name()
		return d
	}
	a := &p.assignments[best]
	d.Grant = Grant{Group: a.Group, PermissionSet: a.set}
	d.Policy = a.id
	d.Condition = a.condText
	var b strings.Builder
	b.Grow(len(pr.UserName) + len(a.grant) + len(db.Name) + 64)
	b.WriteString(pr.UserName)
	b.WriteString(" is in ")
	b.WriteString(a.grant)
	b.WriteString(" on ")
	b.WriteString(db.Name)
	if a.tagText != "" {
		b.WriteString(" (")
		b.WriteString(a.tagText)
		b.WriteString(")")
	}
	if len(a.conds) > 0 {
		b.WriteString(", where ")
		writeConditionsWithValues(&b, a.conds, pr, db)
	}
	d.Reason = b.String()
	return d
}

// explainDeny names the first deny rule that refused, in config order,
// then the first Cedar forbid.
func (p *Policy) explainDeny(d Decision, pr identity.Principal, db Database, reasons []cedar.DiagnosticReason) Decision {
	first, raw := -1, -1
	for _, r := range reasons {
		ref := p.rules[r.PolicyID]
		switch {
		case ref.kind == ruleDeny && (first < 0 || ref.i < first):
			first = ref.i
		case ref.kind == ruleRaw && (raw < 0 || ref.i < raw):
			raw = ref.i
		}
	}
	more := ""
	if n := len(reasons) - 1; n == 1 {
		more = " (1 other deny rule also applies)"
	} else if n > 1 {
		more = fmt.Sprintf(" (%d other deny rules also apply)", n)
	}
	if first < 0 {
		rp := p.raw[raw]
		d.Policy = string(rp.id)
		label := rp.name()
		d.Deny = label
		if rp.description != "" {
			d.Deny = rp.description
			label = fmt.Sprintf("%q (%s)", rp.description, label)
		}
		d.Reason = label + " denies " + pr.UserName + " " + string(d.Level) + " on " + db.Name + more
		return d
	}
	r := &p.denies[first]
	d.Policy = r.id
	d.Deny = r.Description
	d.Condition = joinConditions(r.conds)
	var why []string
	if r.Group != "" {
		why = append(why, pr.UserName+" is in "+r.Group)
	}
	if len(r.DatabaseTags) > 0 {
		why = append(why, db.Name+" has "+r.tagText)
	}
	if len(r.conds) > 0 {
		why = append(why, conditionsWithValues(r.conds, pr, db))
	}
	d.Reason = r.quoted + " denies " + pr.UserName + " " + string(d.Level) + " on " + db.Name
	if len(why) > 0 {
		d.Reason += ": " + strings.Join(why, ", ")
	}
	d.Reason += more
	return d
}

// explainMiss explains a refusal no rule made: the grant that needs MFA,
// else the nearest grant whose condition or tag selector failed, else what
// the person does hold and that nothing grants what they asked for.
func (p *Policy) explainMiss(d Decision, pr identity.Principal, db Database, person *cachedPerson) Decision {
	var held []int
	mfa, condMiss, tagMiss := -1, -1, -1
	var failed *Condition
	for _, i := range person.candidates {
		a := &p.assignments[i]
		enough := a.set.Level.Covers(d.Level)
		if !a.targets(db) {
			if enough && len(a.DatabaseTags) > 0 && tagMiss < 0 {
				tagMiss = i
			}
			continue
		}
		if c := a.failing(pr, db); c != nil {
			if enough && condMiss < 0 {
				condMiss, failed = i, c
			}
			continue
		}
		held = append(held, i)
		if enough && a.set.RequireMFA && !pr.MFA && mfa < 0 {
			mfa = i
		}
	}
	if mfa >= 0 {
		a := &p.assignments[mfa]
		d.Policy = a.id
		d.Reason = pr.UserName + " is in " + a.grant + ", which requires MFA: sign in again with multi-factor authentication at your identity provider (keygate login)"
		return d
	}
	miss, clause := -1, ""
	switch {
	case condMiss >= 0:
		miss = condMiss
		d.Condition = failed.String()
		clause = "its condition " + failed.String() + " does not hold (" + values(*failed, pr, db) + ")"
	case tagMiss >= 0:
		miss = tagMiss
		a := &p.assignments[miss]
		clause = "it applies to databases with " + a.tagText + ", and " + tagMismatch(a.selector, db)
	}
	if miss >= 0 {
		a := &p.assignments[miss]
		d.Policy = a.id
		if len(held) == 0 {
			d.Reason = pr.UserName + " is in " + a.grant + ", but " + clause
		} else {
			d.Reason = pr.UserName + " is in " + p.heldList(held) + "; " + a.grant + " would grant " + string(d.Level) + " on " + db.Name + ", but " + clause
		}
		return d
	}
	d.Reason = p.nearestMiss(pr, person.unique, db, d.Level, held)
	return d
}

// nearestMiss explains a refusal: what the person does hold, and that no
// assignment grants what they asked for.
// groups are the person's, sorted and without repeats.
func (p *Policy) nearestMiss(pr identity.Principal, groups []string, db Database, want Level, held []int) string {
	missing := "no assignment grants " + string(want) + " on " + db.Name
	switch {
	case len(held) > 0:
		return pr.UserName + " is in " + p.heldList(held) + "; " + missing
	case len(groups) == 0:
		return pr.UserName + " is in no group; " + missing
	}
	return pr.UserName + " is in " + strings.Join(groups, ", ") + "; " + missing + " to those groups"
}

func (p *Policy) heldList(held []int) string {
	out := make([]string, len(held))
	for k, i := range held {
		out[k] = p.assignments[i].grant
	}
	return strings.Join(out, ", ")
}

func joinConditions(cs []Condition) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, " and ")
}

// conditionsWithValues is each condition followed by the values it read.
func conditionsWithValues(cs []Condition, pr identity.Principal, db Database) string {
	var b strings.Builder
	writeConditionsWithValues(&b, cs, pr, db)
	return b.String()
}

func writeConditionsWithValues(b *strings.Builder, cs []Condition, pr identity.Principal, db Database) {
	for i, c := range cs {
		if i > 0 {
			b.WriteString(" and ")
		}
		b.WriteString(c.String())
		b.WriteString(" (")
		writeValues(b, c, pr, db)
		b.WriteString(")")
	}
}

// values says what the tags a condition reads are, as in "orders has
// environment=prod, bob has no environment tag".
func values(c Condition, pr identity.Principal, db Database) string {
	var b strings.Builder
	writeValues(&b, c, pr, db)
	return b.String()
}

func writeValues(b *strings.Builder, c Condition, pr identity.Principal, db Database) {
	for i, o := range c.refs() {
		if i > 0 {
			b.WriteString(", ")
		}
		who, tags := db.Name, db.Tags
		if o.src == personTag {
			who, tags = pr.UserName, pr.Attributes
		}
		b.WriteString(who)
		if v, ok := tags[o.value]; ok {
			b.WriteString(" has ")
			b.WriteString(o.value)
			b.WriteString("=")
			b.WriteString(quoteValue(v))
		} else {
			b.WriteString(" has no ")
			b.WriteString(o.value)
			b.WriteString(" tag")
		}
	}
}

// tagList writes tags as "k=v, k2=v2", sorted by key.
func tagList(tags map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, k+"="+quoteValue(tags[k]))
	}
	return strings.Join(out, ", ")
}

// tagMismatch says how db's tags fail sel, by the first key that differs.
func tagMismatch(sel []tag, db Database) string {
	for _, t := range sel {
		v, ok := db.Tags[t.key]
		switch {
		case !ok:
			return db.Name + " has no " + t.key + " tag"
		case v != t.value:
			return db.Name + " has " + t.key + "=" + quoteValue(v)
		}
	}
	return db.Name + " matches"
}
