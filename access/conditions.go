package access

import (
	"fmt"
	"strings"
)

// Conditions is a list of conditions that must all hold. It is a value that
// compares with ==, so that a PermissionSet holding it does too; the zero
// value is the empty list.
type Conditions struct {
	// text is the conditions in canonical form, one per line. Canonical
	// text has no line breaks (strings are quoted with escapes), so the
	// lines are the conditions.
	text string
}

// NewConditions makes a list of conditions. Zero Conditions, which no
// parse returns, are left out.
func NewConditions(cs ...Condition) Conditions {
	var lines []string
	for _, c := range cs {
		if c.op != 0 {
			lines = append(lines, c.String())
		}
	}
	return Conditions{text: strings.Join(lines, "\n")}
}

// ParseConditions parses each of srcs as a condition.
func ParseConditions(srcs ...string) (Conditions, error) {
	cs := make([]Condition, len(srcs))
	for i, s := range srcs {
		c, err := ParseCondition(s)
		if err != nil {
			return Conditions{}, fmt.Errorf("condition %q: %w", s, err)
		}
		cs[i] = c
	}
	return NewConditions(cs...), nil
}

// Len is the number of conditions.
func (cs Conditions) Len() int {
	if cs.text == "" {
		return 0
	}
	return strings.Count(cs.text, "\n") + 1
}

// Strings lists the conditions in canonical form.
func (cs Conditions) Strings() []string {
	if cs.text == "" {
		return nil
	}
	return strings.Split(cs.text, "\n")
}

// list parses the conditions back. Canonical text always parses, so an
// error here is a bug in String.
func (cs Conditions) list() []Condition {
	var out []Condition
	for _, s := range cs.Strings() {
		c, err := ParseCondition(s)
		if err != nil {
			panic(fmt.Sprintf("access: canonical condition %q does not parse: %v", s, err))
		}
		out = append(out, c)
	}
	return out
}
