package access

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGroupPattern: patterns are config input and group names come from
// identity providers. Whatever the input, parsing returns a pattern or a
// *PatternError with a column inside it; a match puts the name back
// together from its parts, never leaves a value empty or holding its
// separator, and agrees with a regular expression built independently from
// the documented rule, which also shows that the split is unique. Along
// the way, foldKey must agree with strings.EqualFold.
func FuzzGroupPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"kg-{environment}-{permission_set}", "kg-prod-db-readonly"},
		{"kg-{environment}-{permission_set}", "KG-Prod-db-readonly"},
		{"kg-{environment}-{permission_set}", "marketing"},
		{"{permission_set}-{environment}", "db-readonly-prod"},
		{"{project}-{permission_set}-{environment}", "a-b-c-d"},
		{"{permission_set}-{environment}.x", "db-readonly-pr.od.x"},
		{"team {project}/{environment}: {permission_set}", "team alpha/prod: db-readonly"},
		{"{permission_set}", "x"},
		{"kg-{permission_set}-ro", "kg-ro-ro-ro"},
		{"{environment}k{permission_set}", "pro\u212adb"},
		{"kg-{environment}{permission_set}", "kg-prod"},
		{"kg-{environment", "kg-"},
		{"{}", ""},
		{"é{a}é{permission_set}é{b}é", "éxéyézé"},
		{"ſ{permission_set}", "S{permission_set}"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, src, name string) {
		// Permission set names and tag values are looked up by foldKey.
		if utf8.ValidString(src) && utf8.ValidString(name) && (foldKey(src) == foldKey(name)) != strings.EqualFold(src, name) {
			t.Fatalf("foldKey(%q) = %q, foldKey(%q) = %q, but EqualFold says %v", src, foldKey(src), name, foldKey(name), strings.EqualFold(src, name))
		}
		p, err := ParseGroupPattern(src)
		if err != nil {
			pe, ok := err.(*PatternError)
			if !ok {
				t.Fatalf("ParseGroupPattern(%q) error %T %v, want *PatternError", src, err, err)
			}
			if pe.Column < 1 || pe.Column > utf8.RuneCountInString(src)+1 {
				t.Fatalf("ParseGroupPattern(%q): column %d outside 1..%d", src, pe.Column, utf8.RuneCountInString(src)+1)
			}
			return
		}
		m, ok := p.Match(name)
		if ok {
			var b strings.Builder
			for i, part := range p.parts {
				v := part.literal
				switch {
				case part.key == PermissionSetPlaceholder:
					v = m.PermissionSet
				case part.key != "":
					v = m.Tags[part.key]
					if strings.IndexFunc(v, func(r rune) bool { return foldEq(r, separator(p, i)) }) >= 0 {
						t.Fatalf("%q ~ %q: {%s} = %q holds its separator %q", src, name, part.key, v, separator(p, i))
					}
				}
				if part.key != "" && v == "" {
					t.Fatalf("%q ~ %q: {%s} is empty", src, name, part.key)
				}
				b.WriteString(v)
			}
			if !strings.EqualFold(b.String(), name) {
				t.Fatalf("%q ~ %q: the parts make %q", src, name, b.String())
			}
			if len(m.Tags) != len(p.keys) {
				t.Fatalf("%q ~ %q: tags %v, want one per key %q", src, name, m.Tags, p.keys)
			}
		}
		// Group names are at most 256 bytes; the regular expression is
		// slow on long input, and would only slow the fuzzing down.
		if !utf8.ValidString(name) || len(name) > 1024 {
			return
		}
		re := oracle(p)
		sub := re.FindStringSubmatch(name)
		if (sub != nil) != ok {
			t.Fatalf("%q ~ %q: Match says %v, %s says %v", src, name, ok, re, sub != nil)
		}
		if !ok {
			return
		}
		k := 1
		for _, part := range p.parts {
			if part.key == "" {
				continue
			}
			want := m.PermissionSet
			if part.key != PermissionSetPlaceholder {
				want = m.Tags[part.key]
			}
			if sub[k] != want {
				t.Fatalf("%q ~ %q: {%s} = %q, %s gives %q", src, name, part.key, want, re, sub[k])
			}
			k++
		}
	})
}

// separator is the rune that ends, or starts, the tag placeholder at
// parts[i]: the first of the literal after it when it comes before
// {permission_set}, else the last of the literal before it.
func separator(p *GroupPattern, i int) rune {
	if i < p.ps {
		r, _ := utf8.DecodeRuneInString(p.parts[i+1].literal)
		return r
	}
	r, _ := utf8.DecodeLastRuneInString(p.parts[i-1].literal)
	return r
}

// oracle is the documented rule as a regular expression: literals without
// regard to case, each tag a run of characters other than its separator,
// the permission set anything.
func oracle(p *GroupPattern) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?is)^`)
	for i, part := range p.parts {
		switch {
		case part.key == "":
			b.WriteString(regexp.QuoteMeta(part.literal))
		case part.key == PermissionSetPlaceholder:
			b.WriteString(`(.+)`)
		default:
			b.WriteString(`([^` + regexp.QuoteMeta(string(separator(p, i))) + `]+)`)
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}
