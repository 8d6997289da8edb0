package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/keygate/keygate/access"
)

// PermissionSet maps to access.PermissionSet.
type PermissionSet struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Access      string   `yaml:"access"`
	TokenTTL    Duration `yaml:"token_ttl"`
	// SessionDuration is the longest a database session opened under the
	// set may last: the gateway ends it at that age and the person
	// reconnects with a fresh token, so that a token valid for minutes
	// cannot hold a connection open for days. Zero (unset) means no
	// limit; otherwise 1m..24h.
	SessionDuration Duration `yaml:"session_duration"`
	RequireMFA      bool     `yaml:"require_mfa"`
	// Conditions are attribute rules that must all hold, in the language
	// of access.ParseCondition.
	Conditions []string `yaml:"conditions"`
}

// Assignment maps to access.Assignment: databases by name ("*" for all)
// or by tag selector.
type Assignment struct {
	Group         string            `yaml:"group"`
	PermissionSet string            `yaml:"permission_set"`
	Databases     []string          `yaml:"databases"`
	DatabaseTags  map[string]string `yaml:"database_tags"`
}

// Deny maps to access.Deny: a rule that refuses access whatever grants it.
type Deny struct {
	Description  string            `yaml:"description"`
	Group        string            `yaml:"group"`
	Databases    []string          `yaml:"databases"`
	DatabaseTags map[string]string `yaml:"database_tags"`
	// Access lists the levels refused, each with the levels above it;
	// empty refuses all.
	Access     []string `yaml:"access"`
	Conditions []string `yaml:"conditions"`
}

// GroupNaming is the group naming rule. Groups whose names match Pattern,
// such as kg-{environment}-{permission_set}, are assigned the permission set
// their name gives on the databases with the tag values it gives, so that
// creating a group at the identity provider is all a new grant takes; see
// access.GroupPattern for how names are matched.
type GroupNaming struct {
	Pattern string `yaml:"pattern"`
}

// validateAccess checks permission sets, assignments, deny rules and the
// policy file against each other and the databases, and reads the policy
// file. dbs holds the names of the configured databases.
func (c *Config) validateAccess(dbs map[string]bool) []error {
	var errs []error
	add := func(p, format string, args ...any) { errs = append(errs, c.errorAt(p, format, args...)) }
	tagKeys := map[string]bool{}
	for _, d := range c.Databases {
		for k := range d.Tags {
			tagKeys[k] = true
		}
	}
	// conditions checks a list of conditions, each at its own line.
	conditions := func(p, owner string, srcs []string) {
		for j, src := range srcs {
			at := fmt.Sprintf("%s.conditions[%d]", p, j)
			cond, err := access.ParseCondition(src)
			if err != nil {
				add(at, "%s: condition %q: %v", owner, src, err)
				continue
			}
			for _, k := range cond.DatabaseTags() {
				if !tagKeys[k] {
					add(at, "%s: condition %q reads database.%s, but no database has a tag %q", owner, src, k, k)
				}
			}
		}
	}
	// selector checks a tag selector: a key no database carries is a
	// misspelling that would make it match nothing.
	selector := func(p, owner string, tags map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			if !tagKeys[k] {
				add(p+".database_tags", "%s selects databases by tag %q, but no database has that tag", owner, k)
			}
		}
	}
	// databases checks a list of database names.
	databases := func(p, owner string, names []string) {
		for j, db := range names {
			if db != access.AllDatabases && !dbs[db] {
				add(fmt.Sprintf("%s.databases[%d]", p, j), "%s names database %q, which is not defined under databases", owner, db)
			}
		}
	}

	sets := map[string]bool{}
	for i, s := range c.PermissionSets {
		p := fmt.Sprintf("permission_sets[%d]", i)
		if s.Name == "" {
			add(p, "permission set without a name")
		} else if sets[s.Name] {
			add(p+".name", "permission set %q is defined twice", s.Name)
		}
		sets[s.Name] = true
		owner := fmt.Sprintf("permission set %q", s.Name)
		if _, err := access.ParseLevel(s.Access); err != nil {
			add(p+".access", "%s: %v", owner, err)
		}
		if ttl := time.Duration(s.TokenTTL); ttl < time.Second || ttl > access.MaxTokenTTL {
			add(p+".token_ttl", "%s: token_ttl %s must be between 1s and %s", owner, ttl, access.MaxTokenTTL)
		}
		if d := time.Duration(s.SessionDuration); d != 0 && (d < access.MinSessionDuration || d > access.MaxSessionDuration) {
			add(p+".session_duration", "%s: session_duration %s must be between %s and %s", owner, d, access.MinSessionDuration, access.MaxSessionDuration)
		}
		conditions(p, owner, s.Conditions)
	}
	for i, a := range c.Assignments {
		p := fmt.Sprintf("assignments[%d]", i)
		owner := fmt.Sprintf("assignment for group %q", a.Group)
		if a.Group == "" {
			add(p, "assignment without a group")
		}
		if !sets[a.PermissionSet] {
			add(p+".permission_set", "%s names permission set %q, which is not defined under permission_sets", owner, a.PermissionSet)
		}
		switch {
		case len(a.Databases) > 0 && len(a.DatabaseTags) > 0:
			add(p+".database_tags", "%s gives both databases and database_tags: use one", owner)
		case len(a.Databases) == 0 && len(a.DatabaseTags) == 0:
			add(p+".databases", "%s lists no databases: name them, use \"*\" for all, or select them with database_tags", owner)
		}
		databases(p, owner, a.Databases)
		selector(p, owner, a.DatabaseTags)
	}
	for i, d := range c.Deny {
		p := fmt.Sprintf("deny[%d]", i)
		owner := fmt.Sprintf("deny rule %q", d.Description)
		if d.Description == "" {
			add(p, "deny rule without a description: it is what a refused person is shown")
			owner = fmt.Sprintf("deny rule %d", i+1)
		}
		switch {
		case len(d.Databases) > 0 && len(d.DatabaseTags) > 0:
			add(p+".database_tags", "%s gives both databases and database_tags: use one", owner)
		case len(d.Databases) == 0 && len(d.DatabaseTags) == 0:
			add(p, "%s lists no databases: name them, use \"*\" for all, or select them with database_tags", owner)
		}
		databases(p, owner, d.Databases)
		selector(p, owner, d.DatabaseTags)
		for j, l := range d.Access {
			if _, err := access.ParseLevel(l); err != nil {
				add(fmt.Sprintf("%s.access[%d]", p, j), "%s: %v", owner, err)
			}
		}
		conditions(p, owner, d.Conditions)
	}
	if c.PolicyFile != "" {
		if err := c.readPolicyFile(); err != nil {
			add("policy_file", "policy_file: %v", err)
		}
	}
	if _, present := c.lines["group_naming"]; present || c.GroupNaming.Pattern != "" {
		errs = append(errs, c.validateGroupNaming(tagKeys)...)
	}
	return errs
}

// validateGroupNaming parses the group naming rule. A placeholder naming a
// tag that no database carries is an error, as in a tag selector: it would
// make every group that matches grant nothing.
func (c *Config) validateGroupNaming(tagKeys map[string]bool) []error {
	pattern := c.GroupNaming.Pattern
	if pattern == "" {
		return []error{c.errorAt("group_naming", "group_naming.pattern is required: a pattern such as kg-{environment}-{permission_set}")}
	}
	p, err := access.ParseGroupPattern(pattern)
	if err != nil {
		return []error{c.errorAt("group_naming.pattern", "group_naming.pattern %q: %v", pattern, err)}
	}
	var errs []error
	for _, k := range p.TagKeys() {
		if !tagKeys[k] {
			errs = append(errs, c.errorAt("group_naming.pattern", "group_naming.pattern %q: {%s} names a database tag, but no database has a tag %q", pattern, k, k))
		}
	}
	if len(errs) == 0 {
		c.groupPattern = p
	}
	return errs
}

// GroupPattern is the group naming rule, or nil when the config has none.
func (c *Config) GroupPattern() *access.GroupPattern { return c.groupPattern }

// NamedAssignments applies the group naming rule to groups, the names of
// the groups keygate knows: the assignments it derives, and findings for
// the groups it cannot use. A group that the config's own assignments or
// deny rules name is no finding for not matching, since rules of its own
// already cover it. Without a rule both are nil.
func (c *Config) NamedAssignments(groups []string) ([]access.Assignment, []access.Finding) {
	if c.groupPattern == nil {
		return nil, nil
	}
	sets := make([]string, len(c.PermissionSets))
	for i, s := range c.PermissionSets {
		sets[i] = s.Name
	}
	dbs := make([]access.Database, len(c.Databases))
	for i, d := range c.Databases {
		dbs[i] = d.AccessDatabase()
	}
	assigned, findings := c.groupPattern.Assign(groups, sets, dbs)
	named := map[string]bool{}
	for _, a := range c.Assignments {
		named[a.Group] = true
	}
	for _, d := range c.Deny {
		named[d.Group] = true
	}
	findings = slices.DeleteFunc(findings, func(f access.Finding) bool { return f.Kind == access.FindingNoMatch && named[f.Group] })
	return assigned, findings
}

// readPolicyFile reads the policy file and checks that its Cedar parses
// and validates; the error names the file's line.
func (c *Config) readPolicyFile() error {
	path := c.Resolve(c.PolicyFile)
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read Cedar policies: %w", err)
	}
	if _, err := access.Compile(access.Rules{Cedar: []access.CedarFile{{Name: path, Text: text}}}); err != nil {
		return err
	}
	c.policyText = text
	return nil
}

// Policy builds the access policy the config describes, with extra
// assignments after the config's own: those NamedAssignments derives.
func (c *Config) Policy(extra ...access.Assignment) (*access.Policy, error) {
	r, err := c.Rules()
	if err != nil {
		return nil, err
	}
	return r.Policy(extra...)
}

// Policy compiles the rules, with extra assignments after their own.
func (r Rules) Policy(extra ...access.Assignment) (*access.Policy, error) {
	var out access.Rules
	var errs []error
	parse := func(owner string, srcs []string) access.Conditions {
		cs, err := access.ParseConditions(srcs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", owner, err))
		}
		return cs
	}
	for _, s := range r.PermissionSets {
		out.PermissionSets = append(out.PermissionSets, access.PermissionSet{
			Name:            s.Name,
			Description:     s.Description,
			Level:           access.Level(s.Access),
			TokenTTL:        time.Duration(s.TokenTTL),
			SessionDuration: time.Duration(s.SessionDuration),
			RequireMFA:      s.RequireMFA,
			Conditions:      parse(fmt.Sprintf("permission set %q", s.Name), s.Conditions),
		})
	}
	for _, a := range r.Assignments {
		out.Assignments = append(out.Assignments, access.Assignment{Group: a.Group, PermissionSet: a.PermissionSet, Databases: a.Databases, DatabaseTags: a.DatabaseTags})
	}
	out.Assignments = append(out.Assignments, extra...)
	for _, d := range r.Deny {
		var levels []access.Level
		for _, l := range d.Access {
			levels = append(levels, access.Level(l))
		}
		out.Denies = append(out.Denies, access.Deny{
			Description:  d.Description,
			Group:        d.Group,
			Databases:    d.Databases,
			DatabaseTags: d.DatabaseTags,
			Levels:       levels,
			Conditions:   parse(fmt.Sprintf("deny rule %q", d.Description), d.Conditions),
		})
	}
	if r.PolicyFile != "" {
		out.Cedar = []access.CedarFile{{Name: r.PolicyFile, Text: []byte(r.Cedar)}}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return access.Compile(out)
}
