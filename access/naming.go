package access

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A GroupPattern is a group naming rule such as
//
//	kg-{environment}-{permission_set}
//
// Groups whose names match it are assigned the permission set their name
// gives, on the databases whose tags have the values their name gives, so
// that an identity provider's group is enough to grant access: nobody edits
// the config for each new team and environment.
//
// A pattern is literal text and placeholders. {permission_set} must appear
// once; every other {KEY} names a database tag, at most once each. Two
// placeholders need literal text between them, since nothing would say
// where one value ends and the next begins. Literal text matches without
// regard to case, as identity providers vary in how they spell it.
//
// Every placeholder matches one or more characters, and the split is
// unique: a tag placeholder before {permission_set} ends at the first
// occurrence of the first character of the literal after it, and one after
// {permission_set} starts after the last occurrence of the last character
// of the literal before it; {permission_set} takes what lies between. So a
// tag value never contains its separator, while a permission set name may
// ("kg-prod-db-readonly" is environment "prod" and permission set
// "db-readonly"). A name that does not split this way does not match.
type GroupPattern struct {
	text  string
	parts []patternPart
	// ps is the index in parts of {permission_set}.
	ps int
	// keys are the tag keys, in the order they appear.
	keys []string
}

// patternPart is literal text, or a placeholder when key is set.
type patternPart struct {
	literal string
	key     string
}

// PermissionSetPlaceholder is the placeholder key that stands for the
// permission set's name.
const PermissionSetPlaceholder = "permission_set"

// maxPatternLen bounds a pattern; config input, but a bound keeps the
// matcher's cost obvious.
const maxPatternLen = 256

// PatternError is a group pattern that does not parse. Column counts
// characters from 1 at the start of the pattern.
type PatternError struct {
	Column int
	Msg    string
}

func (e *PatternError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// ParseGroupPattern parses a group naming rule.
func ParseGroupPattern(src string) (*GroupPattern, error) {
	fail := func(col int, format string, args ...any) (*GroupPattern, error) {
		return nil, &PatternError{Column: col, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case src == "":
		return fail(1, "the pattern is empty: write one such as kg-{environment}-{permission_set}")
	case len(src) > maxPatternLen:
		return fail(1, "a pattern is at most %d bytes", maxPatternLen)
	case !utf8.ValidString(src):
		return fail(1, "a pattern must be UTF-8 text")
	}
	p := &GroupPattern{text: src, ps: -1}
	var lit strings.Builder
	seen := map[string]int{}
	col := 0
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		col++
		switch r {
		case '}':
			return fail(col, "} without a { before it: braces only enclose placeholders")
		case '{':
			start := col
			end := strings.IndexAny(src[i+1:], "{}")
			if end < 0 || src[i+1+end] == '{' {
				return fail(start, "{ is not closed: write a placeholder as {permission_set} or {TAG}")
			}
			key := src[i+1 : i+1+end]
			if key == "" {
				return fail(start, "{} names nothing: write {permission_set} or a database tag such as {environment}")
			}
			for j, kr := range []rune(key) {
				if !isWordRune(kr) {
					return fail(start+1+j, "placeholder {%s}: %q cannot appear in a tag key", key, kr)
				}
			}
			if first, dup := seen[key]; dup {
				return fail(start, "{%s} appears twice (first at column %d): each placeholder may appear once", key, first)
			}
			seen[key] = start
			if lit.Len() > 0 {
				p.parts = append(p.parts, patternPart{literal: lit.String()})
				lit.Reset()
			} else if n := len(p.parts); n > 0 {
				return fail(start, "{%s} follows {%s} with nothing between: separate them with literal text, as in {%s}-{%s}",
					key, p.parts[n-1].key, p.parts[n-1].key, key)
			}
			if key == PermissionSetPlaceholder {
				p.ps = len(p.parts)
			} else {
				p.keys = append(p.keys, key)
			}
			p.parts = append(p.parts, patternPart{key: key})
			col += utf8.RuneCountInString(key) + 1
			i += 1 + end + 1
			continue
		}
		lit.WriteRune(r)
		i += size
	}
	if lit.Len() > 0 {
		p.parts = append(p.parts, patternPart{literal: lit.String()})
	}
	if p.ps < 0 {
		return fail(1, "the pattern has no {permission_set}: it must say which part of a group's name is the permission set")
	}
	return p, nil
}

// String is the pattern as written.
func (p *GroupPattern) String() string { return p.text }

// TagKeys are the database tag keys the pattern's placeholders name, in
// the order they appear.
func (p *GroupPattern) TagKeys() []string { return slices.Clone(p.keys) }

// GroupMatch is what a group's name says: a permission set and database
// tag values, as written in the name.
type GroupMatch struct {
	PermissionSet string
	Tags          map[string]string
}

// Match splits a group's name by the pattern; ok is false when it does not
// match.
func (p *GroupPattern) Match(name string) (m GroupMatch, ok bool) {
	tags := make(map[string]string, len(p.keys))
	// Left of {permission_set}, left to right.
	start := 0
	for i := 0; i < p.ps; i++ {
		part := p.parts[i]
		if part.key == "" {
			n, ok := prefixFold(name[start:], part.literal)
			if !ok {
				return GroupMatch{}, false
			}
			start += n
			continue
		}
		// The next part is literal: placeholders never touch.
		sep, _ := utf8.DecodeRuneInString(p.parts[i+1].literal)
		n := indexFold(name[start:], sep)
		if n <= 0 {
			return GroupMatch{}, false
		}
		tags[part.key] = name[start : start+n]
		start += n
	}
	// Right of {permission_set}, right to left.
	end := len(name)
	for i := len(p.parts) - 1; i > p.ps; i-- {
		part := p.parts[i]
		if part.key == "" {
			n, ok := suffixFold(name[start:end], part.literal)
			if !ok {
				return GroupMatch{}, false
			}
			end -= n
			continue
		}
		sep, _ := utf8.DecodeLastRuneInString(p.parts[i-1].literal)
		k := lastIndexFold(name[start:end], sep)
		if k < 0 {
			return GroupMatch{}, false
		}
		// Step over the separator as the name spells it: under case
		// folding its width may differ from sep's.
		_, w := utf8.DecodeRuneInString(name[start+k:])
		v := start + k + w
		if v >= end {
			return GroupMatch{}, false
		}
		tags[part.key] = name[v:end]
		end = v
	}
	if start >= end {
		return GroupMatch{}, false
	}
	return GroupMatch{PermissionSet: name[start:end], Tags: tags}, true
}

// foldEq reports whether two runes are equal under Unicode simple case
// folding, as strings.EqualFold compares them.
func foldEq(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// prefixFold reports whether s starts with prefix under case folding, and
// how many bytes of s that prefix takes.
func prefixFold(s, prefix string) (int, bool) {
	n := 0
	for _, pr := range prefix {
		if n >= len(s) {
			return 0, false
		}
		r, w := utf8.DecodeRuneInString(s[n:])
		if !foldEq(r, pr) {
			return 0, false
		}
		n += w
	}
	return n, true
}

// suffixFold reports whether s ends with suffix under case folding, and
// how many bytes of s that suffix takes.
func suffixFold(s, suffix string) (int, bool) {
	n := 0
	for len(suffix) > 0 {
		pr, pw := utf8.DecodeLastRuneInString(suffix)
		suffix = suffix[:len(suffix)-pw]
		if n >= len(s) {
			return 0, false
		}
		r, w := utf8.DecodeLastRuneInString(s[:len(s)-n])
		if !foldEq(r, pr) {
			return 0, false
		}
		n += w
	}
	return n, true
}

// indexFold is the byte index of the first rune of s equal to sep under
// case folding, or -1.
func indexFold(s string, sep rune) int {
	for i, r := range s {
		if foldEq(r, sep) {
			return i
		}
	}
	return -1
}

// lastIndexFold is the byte index of the last rune of s equal to sep under
// case folding, or -1.
func lastIndexFold(s string, sep rune) int {
	for end := len(s); end > 0; {
		r, w := utf8.DecodeLastRuneInString(s[:end])
		end -= w
		if foldEq(r, sep) {
			return end
		}
	}
	return -1
}

// FindingKind says why the naming rule could not use a group.
type FindingKind string

// Kinds of finding.
const (
	// FindingNoMatch: the group's name does not match the pattern.
	FindingNoMatch FindingKind = "no_match"
	// FindingUnknownPermissionSet: the name gives a permission set that is
	// not defined.
	FindingUnknownPermissionSet FindingKind = "unknown_permission_set"
	// FindingUnknownTagValue: the name gives tag values that no database
	// has.
	FindingUnknownTagValue FindingKind = "unknown_tag_value"
)

// A Finding is a group the naming rule could not turn into an assignment,
// and why: a group named against the convention, or one whose name gives a
// permission set or tag values that do not exist.
type Finding struct {
	Group  string
	Kind   FindingKind
	Reason string
}

// NamingRuleID is the rule id of the assignment the naming rule derives
// from a group, as decisions name it (Decision.Policy).
func NamingRuleID(group string) string { return "group_naming[" + group + "]" }

// Assign turns the groups whose names match the pattern into assignments:
// the permission set the name gives, on the databases whose tags have the
// values the name gives (every database when the pattern names no tag).
// sets are the names of the permission sets, dbs the databases. A name's
// permission set and tag values are looked up as written, or else without
// regard to case when that finds exactly one; the assignment carries the
// configured spelling. Groups it cannot use are findings, in the order
// given; a name given twice counts once.
func (p *GroupPattern) Assign(groups, sets []string, dbs []Database) ([]Assignment, []Finding) {
	var out []Assignment
	var findings []Finding
	setIndex := newNameIndex(sets)
	values := make(map[string]*nameIndex, len(p.keys))
	for _, k := range p.keys {
		var vs []string
		for _, d := range dbs {
			if v, ok := d.Tags[k]; ok {
				vs = append(vs, v)
			}
		}
		values[k] = newNameIndex(vs)
	}
	seen := make(map[string]bool, len(groups))
	for _, g := range groups {
		if seen[g] {
			continue
		}
		seen[g] = true
		m, ok := p.Match(g)
		if !ok {
			findings = append(findings, Finding{Group: g, Kind: FindingNoMatch,
				Reason: fmt.Sprintf("does not match the group naming rule %s", p.text)})
			continue
		}
		set, ok := setIndex.lookup(m.PermissionSet)
		if !ok {
			findings = append(findings, Finding{Group: g, Kind: FindingUnknownPermissionSet,
				Reason: fmt.Sprintf("names permission set %q, which is not defined under permission_sets", m.PermissionSet)})
			continue
		}
		a := Assignment{Group: g, PermissionSet: set, ID: NamingRuleID(g)}
		if len(p.keys) == 0 {
			a.Databases = []string{AllDatabases}
			out = append(out, a)
			continue
		}
		a.DatabaseTags = make(map[string]string, len(p.keys))
		for _, k := range p.keys {
			v, ok := values[k].lookup(m.Tags[k])
			if !ok {
				v = m.Tags[k]
			}
			a.DatabaseTags[k] = v
		}
		if !slices.ContainsFunc(dbs, func(d Database) bool { return hasTags(d, a.DatabaseTags) }) {
			findings = append(findings, Finding{Group: g, Kind: FindingUnknownTagValue,
				Reason: fmt.Sprintf("names databases with %s, and no database has %s", tagList(a.DatabaseTags), pluralTags(a.DatabaseTags))})
			continue
		}
		out = append(out, a)
	}
	return out, findings
}

// pluralTags says "that tag" or "those tags".
func pluralTags(tags map[string]string) string {
	if len(tags) == 1 {
		return "that tag"
	}
	return "those tags together"
}

// nameIndex finds a name as written or, failing that, the one name equal
// to it without regard to case.
type nameIndex struct {
	exact map[string]bool
	// folded lists the names under their foldKey.
	folded map[string][]string
}

func newNameIndex(names []string) *nameIndex {
	x := &nameIndex{exact: make(map[string]bool, len(names)), folded: make(map[string][]string, len(names))}
	for _, n := range names {
		if !x.exact[n] {
			x.exact[n] = true
			k := foldKey(n)
			x.folded[k] = append(x.folded[k], n)
		}
	}
	return x
}

func (x *nameIndex) lookup(s string) (string, bool) {
	if x.exact[s] {
		return s, true
	}
	if l := x.folded[foldKey(s)]; len(l) == 1 {
		return l[0], true
	}
	return "", false
}

// foldKey is s with every rune replaced by the least rune it folds to, so
// that two strings have the same key exactly when strings.EqualFold holds.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// hasTags reports whether db carries every one of tags.
func hasTags(db Database, tags map[string]string) bool {
	for k, v := range tags {
		if got, ok := db.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}
