// Package access decides who may reach which database at which level. It is
// the only place where that decision is made: the token endpoint asks it before
// minting, the gateway asks it again at connect time and again whenever the
// person's groups change. It is pure: no I/O, no clock, no globals.
package access

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

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

// PermissionSet names an access level and the terms that come with it.
type PermissionSet struct {
	Name     string
	Level    Level
	TokenTTL time.Duration
	// RequireMFA grants the set only to a person whose sign-in used
	// multi-factor authentication at the identity provider.
	RequireMFA bool
}

// AllDatabases is the database pattern that an assignment uses to cover every
// configured database.
const AllDatabases = "*"

// Assignment grants a group a permission set on some databases.
type Assignment struct {
	Group         string
	PermissionSet string
	Databases     []string
}

func (a Assignment) covers(db string) bool {
	for _, d := range a.Databases {
		if d == AllDatabases || d == db {
			return true
		}
	}
	return false
}

// Database is a database as the decision sees it.
type Database struct {
	Name string
	Tags map[string]string
}

// Policy is the whole set of rules. It is immutable once built; a config
// reload builds a new one.
type Policy struct {
	sets        map[string]PermissionSet
	assignments []Assignment
}

// NewPolicy checks that every assignment names a known permission set and
// builds the policy.
func NewPolicy(sets []PermissionSet, assignments []Assignment) (*Policy, error) {
	p := &Policy{sets: make(map[string]PermissionSet, len(sets))}
	for _, s := range sets {
		if _, dup := p.sets[s.Name]; dup {
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
		p.sets[s.Name] = s
	}
	for _, a := range assignments {
		if _, ok := p.sets[a.PermissionSet]; !ok {
			return nil, fmt.Errorf("assignment for group %q names unknown permission set %q", a.Group, a.PermissionSet)
		}
		a.Databases = slices.Clone(a.Databases)
		p.assignments = append(p.assignments, a)
	}
	return p, nil
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
	// Grant is the grant that allowed the request; zero when refused.
	Grant Grant
	// Reason is a sentence safe to show the person and to write to the audit
	// log: why the request was allowed or what is missing.
	Reason string
}

// TokenTTL is how long a token minted on this decision may live.
func (d Decision) TokenTTL() time.Duration { return d.Grant.PermissionSet.TokenTTL }

// Grants lists every grant the principal holds on db, most specific first
// (lowest level, then shortest token lifetime, then name).
func (p *Policy) Grants(pr identity.Principal, db Database) []Grant {
	if !pr.Active {
		return nil
	}
	var out []Grant
	for _, a := range p.assignments {
		if !pr.InGroup(a.Group) || !a.covers(db.Name) {
			continue
		}
		out = append(out, Grant{Group: a.Group, PermissionSet: p.sets[a.PermissionSet]})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].PermissionSet, out[j].PermissionSet
		if a.Level != b.Level {
			return a.Level.rank() < b.Level.rank()
		}
		if a.TokenTTL != b.TokenTTL {
			return a.TokenTTL < b.TokenTTL
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return out[i].Group < out[j].Group
	})
	return out
}

// LeastLevel is the lowest level the principal holds on db; ok is false when
// they hold none.
func (p *Policy) LeastLevel(pr identity.Principal, db Database) (Level, bool) {
	g := p.Grants(pr, db)
	if len(g) == 0 {
		return "", false
	}
	return g[0].PermissionSet.Level, true
}

// Decide answers whether pr may reach db at level want.
func (p *Policy) Decide(pr identity.Principal, db Database, want Level) Decision {
	d := Decision{User: pr.UserName, Database: db.Name, Level: want}
	if want.rank() < 0 {
		d.Reason = fmt.Sprintf("unknown access level %q: use ro, rw or admin", want)
		return d
	}
	if !pr.Active {
		d.Reason = fmt.Sprintf("%s is disabled", pr.UserName)
		return d
	}
	grants := p.Grants(pr, db)
	var needMFA *Grant
	for _, g := range grants {
		if !g.PermissionSet.Level.Covers(want) {
			continue
		}
		if g.PermissionSet.RequireMFA && !pr.MFA {
			if needMFA == nil {
				needMFA = &g
			}
			continue
		}
		d.Allowed = true
		d.Grant = g
		d.Reason = fmt.Sprintf("%s is in %s → %s (%s) on %s", pr.UserName, g.Group, g.PermissionSet.Name, g.PermissionSet.Level, db.Name)
		return d
	}
	if needMFA != nil {
		d.Reason = fmt.Sprintf("%s is in %s → %s (%s), which requires MFA: sign in again with multi-factor authentication at your identity provider (keygate login)",
			pr.UserName, needMFA.Group, needMFA.PermissionSet.Name, needMFA.PermissionSet.Level)
		return d
	}
	d.Reason = p.nearestMiss(pr, db, want, grants)
	return d
}

// nearestMiss explains a refusal: what the person does hold, and that no
// assignment grants what they asked for.
func (p *Policy) nearestMiss(pr identity.Principal, db Database, want Level, grants []Grant) string {
	missing := fmt.Sprintf("no assignment grants %s on %s", want, db.Name)
	if len(grants) > 0 {
		var held []string
		for _, g := range grants {
			held = append(held, fmt.Sprintf("%s → %s (%s)", g.Group, g.PermissionSet.Name, g.PermissionSet.Level))
		}
		return fmt.Sprintf("%s is in %s; %s", pr.UserName, strings.Join(held, ", "), missing)
	}
	if len(pr.Groups) == 0 {
		return fmt.Sprintf("%s is in no group; %s", pr.UserName, missing)
	}
	groups := slices.Clone(pr.Groups)
	slices.Sort(groups)
	return fmt.Sprintf("%s is in %s; %s to those groups", pr.UserName, strings.Join(groups, ", "), missing)
}
