package access

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseCondition: conditions are config input. Whatever the input,
// parsing returns a condition or an error with a column inside it, and a
// condition's canonical form parses back to itself.
func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{
		"database.environment == person.environment",
		"person.department in [engineering, data]",
		`database.tier != "gold"`,
		"person.department not in [contractors, \"x,y\"]",
		"has person.clearance",
		"not has database.owner",
		`database.note == "say \"hi\"\n"`,
		"database.a = b",
		"person.x in [",
		"\"",
		"not",
		"database.é == ü",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := ParseCondition(src)
		if err != nil {
			ce, ok := err.(*ConditionError)
			if !ok {
				t.Fatalf("ParseCondition(%q) error %T %v, want *ConditionError", src, err, err)
			}
			if ce.Column < 1 || ce.Column > utf8.RuneCountInString(src)+1 {
				t.Fatalf("ParseCondition(%q): column %d outside 1..%d", src, ce.Column, utf8.RuneCountInString(src)+1)
			}
			return
		}
		s := c.String()
		again, err := ParseCondition(s)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", s, src, err)
		}
		if again.String() != s {
			t.Fatalf("canonical %q parses to %q", s, again.String())
		}
		// The compiled Cedar and the Go evaluator must exist for every
		// parsed condition.
		_ = c.cedar()
		_ = c.holds(map[string]string{"a": "b"}, nil)
	})
}
