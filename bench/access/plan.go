package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

// A plan is a company's worth of access rules and people, drawn at random
// from a fixed seed so that every run measures the same thing.
type plan struct {
	rules     access.Rules
	people    []identity.Principal
	databases []access.Database
	// conditional and selectors count the permission sets with conditions
	// and the assignments that select databases by tag.
	conditional, selectors int
	// memberships is the number of (person, group) pairs.
	memberships int
}

var (
	environments = []string{"prod", "staging", "dev"}
	departments  = []string{"engineering", "data", "finance", "sales", "support", "marketing", "legal", "contractors"}
	tiers        = []string{"gold", "silver", "bronze"}
	levels       = []access.Level{access.ReadOnly, access.ReadOnly, access.ReadOnly, access.ReadWrite, access.ReadWrite, access.Admin}
)

// conditionTemplates are the attribute rules permission sets are given.
var conditionTemplates = [][]string{
	{"database.environment == person.environment"},
	{"person.department in [engineering, data]"},
	{"database.tier != gold"},
	{"has person.team", "database.team == person.team"},
	{"database.environment == person.environment", "person.department not in [contractors, sales]"},
}

func newPlan(o options) (*plan, error) {
	r := rand.New(rand.NewPCG(o.seed, 0x6b657967617465))
	p := &plan{}
	team := func() string { return fmt.Sprintf("team%02d", r.IntN(o.teams)) }
	group := func() string { return fmt.Sprintf("group%04d", r.IntN(o.groups)) }
	pick := func(s []string) string { return s[r.IntN(len(s))] }

	for i := range o.databases {
		p.databases = append(p.databases, access.Database{
			Name: fmt.Sprintf("db%03d", i),
			Tags: map[string]string{"environment": pick(environments), "tier": pick(tiers), "team": team()},
		})
	}
	for i := range o.sets {
		s := access.PermissionSet{
			Name:       fmt.Sprintf("set%04d", i),
			Level:      levels[r.IntN(len(levels))],
			TokenTTL:   time.Duration(5+r.IntN(55)) * time.Minute,
			RequireMFA: r.IntN(10) == 0,
		}
		if r.IntN(2) == 0 {
			c, err := access.ParseConditions(conditionTemplates[r.IntN(len(conditionTemplates))]...)
			if err != nil {
				return nil, err
			}
			s.Conditions = c
			p.conditional++
		}
		p.rules.PermissionSets = append(p.rules.PermissionSets, s)
		// Each set is assigned to one or two groups.
		for range 1 + r.IntN(2) {
			a := access.Assignment{Group: group(), PermissionSet: s.Name}
			switch n := r.IntN(10); {
			case n < 2:
				a.Databases = []string{access.AllDatabases}
			case n < 6:
				a.DatabaseTags = map[string]string{"environment": pick(environments)}
				if n == 5 {
					a.DatabaseTags["tier"] = pick(tiers)
				}
				p.selectors++
			default:
				for range 1 + r.IntN(5) {
					a.Databases = append(a.Databases, p.databases[r.IntN(len(p.databases))].Name)
				}
			}
			p.rules.Assignments = append(p.rules.Assignments, a)
		}
	}
	for i := range o.denies {
		d := access.Deny{
			Description:  fmt.Sprintf("deny rule %d", i),
			DatabaseTags: map[string]string{"environment": pick(environments)},
		}
		switch i % 4 {
		case 0:
			d.Group = group()
		case 1:
			d.Group = group()
			d.Levels = []access.Level{access.ReadWrite}
		case 2:
			c, err := access.ParseConditions("person.department == contractors")
			if err != nil {
				return nil, err
			}
			d.Conditions = c
			d.Levels = []access.Level{access.Admin}
		case 3:
			d.DatabaseTags = nil
			d.Databases = []string{p.databases[r.IntN(len(p.databases))].Name}
			d.Group = group()
		}
		p.rules.Denies = append(p.rules.Denies, d)
	}
	for i := range o.people {
		pr := identity.Principal{
			UserName: fmt.Sprintf("person%05d", i),
			Active:   true,
			MFA:      r.IntN(2) == 0,
			Attributes: map[string]string{
				"environment": pick(environments),
				"department":  pick(departments),
			},
		}
		if r.IntN(4) != 0 {
			pr.Attributes["team"] = team()
		}
		// Most people are in a handful of groups, some in many.
		n := 1 + r.IntN(6)
		if r.IntN(20) == 0 {
			n = 20 + r.IntN(40)
		}
		for range n {
			pr.Groups = append(pr.Groups, group())
		}
		p.memberships += n
		p.people = append(p.people, pr)
	}
	return p, nil
}
