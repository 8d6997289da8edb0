package scim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// maxFilterLen bounds a filter; real ones are a few dozen bytes.
const maxFilterLen = 4096

// parseFilter parses a filter query parameter (RFC 7644 §3.4.2.2).
func parseFilter(s string) (filter.Expression, error) {
	if len(s) > maxFilterLen {
		return nil, badFilter("the filter is longer than %d bytes", maxFilterLen)
	}
	e, err := filter.ParseFilterNumber([]byte(s))
	if err != nil {
		return nil, badFilter("cannot parse filter %q: write it as in RFC 7644, such as userName eq \"alice\"", s)
	}
	return e, nil
}

// matcher evaluates a filter against docs of one resource type.
type matcher struct {
	rt *resourceType
}

// match reports whether d satisfies e. An error means the filter is
// wrong for this resource type (an unknown attribute, an operator the
// attribute's type cannot take), whatever the doc.
func (m matcher) match(e filter.Expression, d doc) (bool, error) {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		l, err := m.match(x.Left, d)
		if err != nil {
			return false, err
		}
		// Evaluate both sides even when the left decides, so that a wrong
		// right-hand side is reported for every doc, not only some.
		r, err := m.match(x.Right, d)
		if err != nil {
			return false, err
		}
		switch strings.ToLower(string(x.Operator)) {
		case "and":
			return l && r, nil
		case "or":
			return l || r, nil
		}
		return false, badFilter("unknown logical operator %q", x.Operator)
	case *filter.NotExpression:
		r, err := m.match(x.Expression, d)
		return !r, err
	case *filter.AttributeExpression:
		a, values, err := m.resolve(x.AttributePath, d)
		if err != nil {
			return false, err
		}
		return compare(a, values, x.Operator, x.CompareValue)
	case *filter.ValuePath:
		// The [filter] applies to the elements of the attribute itself,
		// not to the "value" sub-attribute resolve would compare on.
		a, v, err := m.lookup(x.AttributePath, d)
		if err != nil {
			return false, err
		}
		if a.Type != tComplex || x.AttributePath.SubAttribute != nil {
			return false, badFilter("%s is not a complex attribute: it takes no [filter]", x.AttributePath.String())
		}
		values := flatten(v)
		sub := matcher{rt: &resourceType{Name: a.Name, core: &schema{Attributes: a.SubAttributes}}}
		found := false
		for _, v := range values {
			el, ok := v.(map[string]any)
			if !ok {
				continue
			}
			ok, err := sub.match(x.ValueFilter, doc(el))
			if err != nil {
				return false, err
			}
			found = found || ok
		}
		if len(values) == 0 {
			// Validate the inner filter even when there is nothing to
			// test it on.
			if _, err := sub.match(x.ValueFilter, doc{}); err != nil {
				return false, err
			}
		}
		return found, nil
	}
	return false, badFilter("unsupported filter expression %T", e)
}

// resolve finds the attribute a path names and the values it has in d: for
// a multi-valued attribute each value, for a sub-attribute of a
// multi-valued complex attribute each element's. A multi-valued complex
// attribute named without a sub-attribute compares on its "value".
func (m matcher) resolve(p filter.AttributePath, d doc) (*attribute, []any, error) {
	a, v, err := m.lookup(p, d)
	if err != nil {
		return nil, nil, err
	}
	subName := ""
	if p.SubAttribute != nil {
		subName = *p.SubAttribute
	} else if a.Type == tComplex && a.MultiValued && a.sub("value") != nil {
		subName = "value"
	}
	if subName == "" {
		if a.Type == tComplex {
			return nil, nil, badFilter("%s is complex: compare one of its sub-attributes, such as %s.%s", a.Name, a.Name, a.SubAttributes[0].Name)
		}
		return a, flatten(v), nil
	}
	s := a.sub(subName)
	if s == nil {
		return nil, nil, badFilter("unknown attribute %q in filter", p.String())
	}
	var values []any
	for _, e := range flatten(v) {
		if em, ok := e.(map[string]any); ok {
			values = append(values, flatten(em[s.Name])...)
		}
	}
	return s, values, nil
}

// lookup finds the top-level attribute a path names, ignoring its
// sub-attribute, and its value in d.
func (m matcher) lookup(p filter.AttributePath, d doc) (*attribute, any, error) {
	name := p.AttributeName
	var attrs []*attribute
	var container map[string]any = d
	switch {
	case p.URIPrefix != nil:
		urn := *p.URIPrefix
		if ext := m.rt.extension(urn); ext != nil {
			attrs = ext.Attributes
			container, _ = d[ext.ID].(map[string]any)
		} else if strings.EqualFold(urn, m.rt.core.ID) {
			attrs = append(append([]*attribute(nil), m.rt.core.Attributes...), common...)
		} else {
			return nil, nil, badFilter("unknown schema %q in filter", urn)
		}
	default:
		attrs = append(append([]*attribute(nil), m.rt.core.Attributes...), common...)
	}
	a := find(attrs, name)
	if a == nil {
		return nil, nil, badFilter("unknown attribute %q in filter", p.String())
	}
	return a, container[a.Name], nil
}

func flatten(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	}
	return []any{v}
}

// compare applies op to the attribute's values: true when any value
// satisfies it. ne is the negation of eq, so an absent attribute is "not
// equal" to anything.
func compare(a *attribute, values []any, op filter.CompareOperator, want any) (bool, error) {
	o := strings.ToLower(string(op))
	if o == "pr" {
		for _, v := range values {
			if s, ok := v.(string); !ok || s != "" {
				return true, nil
			}
		}
		return false, nil
	}
	if o == "ne" {
		eq, err := compare(a, values, filter.EQ, want)
		return !eq, err
	}
	w, err := compareValue(a, o, want)
	if err != nil {
		return false, err
	}
	for _, v := range values {
		if ok := compareOne(a, o, v, w); ok {
			return true, nil
		}
	}
	return false, nil
}

// compareValue converts a filter's literal to what a's values are compared
// with, refusing operators the type cannot take.
func compareValue(a *attribute, op string, v any) (any, error) {
	switch op {
	case "eq", "co", "sw", "ew", "gt", "ge", "lt", "le":
	default:
		return nil, badFilter("unknown operator %q", op)
	}
	if v == nil {
		if op != "eq" {
			return nil, badFilter("%s %s null: only eq compares with null", a.Name, op)
		}
		return nil, nil
	}
	switch a.Type {
	case tBoolean:
		b, ok := v.(bool)
		if !ok || op != "eq" {
			return nil, badFilter("%s is a boolean: compare it with eq true or eq false", a.Name)
		}
		return b, nil
	case tInteger, tDecimal:
		n, ok := v.(json.Number)
		if !ok {
			return nil, badFilter("%s is a number: compare it with a number", a.Name)
		}
		if substringOp(op) {
			return nil, badFilter("%s is a number: %s does not apply", a.Name, op)
		}
		f, err := n.Float64()
		if err != nil {
			return nil, badFilter("%s: %v", a.Name, err)
		}
		return f, nil
	case tDateTime:
		s, err := literal(a, v)
		if err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, badFilter("%s is a date and time: compare it with an RFC 3339 string, not %q", a.Name, s)
		}
		if substringOp(op) {
			return nil, badFilter("%s is a date and time: %s does not apply", a.Name, op)
		}
		return t, nil
	case tComplex:
		return nil, badFilter("%s is complex: compare one of its sub-attributes", a.Name)
	}
	if a.Type == tBinary && op != "eq" {
		return nil, badFilter("%s is binary: only eq applies", a.Name)
	}
	return literal(a, v)
}

func substringOp(op string) bool { return op == "co" || op == "sw" || op == "ew" }

// literal is a filter's string literal. The parser leaves JSON escapes in
// place.
func literal(a *attribute, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", badFilter("%s is a string: compare it with a quoted string", a.Name)
	}
	var out string
	if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err != nil {
		return "", badFilter("bad string %q in filter", s)
	}
	return out, nil
}

func compareOne(a *attribute, op string, v, want any) bool {
	if want == nil {
		return v == nil
	}
	switch w := want.(type) {
	case bool:
		b, ok := v.(bool)
		return ok && b == w
	case float64:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && ordered(op, cmpFloat(f, w))
	case time.Time:
		s, ok := v.(string)
		if !ok {
			return false
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && ordered(op, t.Compare(w))
	case string:
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		if !a.CaseExact {
			s, w = strings.ToLower(s), strings.ToLower(w)
		}
		switch op {
		case "co":
			return strings.Contains(s, w)
		case "sw":
			return strings.HasPrefix(s, w)
		case "ew":
			return strings.HasSuffix(s, w)
		}
		return ordered(op, strings.Compare(s, w))
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ordered(op string, c int) bool {
	switch op {
	case "eq":
		return c == 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	}
	return false
}

// pushdown finds, in a filter, an equality on userName or externalId (or
// displayName for groups) that every match must satisfy, so that the store
// can look candidates up by index instead of reading every resource. The
// full filter is still evaluated on the candidates.
func pushdown(e filter.Expression) (attr, value string, ok bool) {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if x.AttributePath.URIPrefix != nil || x.AttributePath.SubAttribute != nil || !strings.EqualFold(string(x.Operator), "eq") {
			return "", "", false
		}
		s, isString := x.CompareValue.(string)
		if !isString {
			return "", "", false
		}
		var v string
		if json.Unmarshal([]byte(`"`+s+`"`), &v) != nil {
			return "", "", false
		}
		for _, name := range []string{"userName", "externalId", "displayName", "id"} {
			if strings.EqualFold(x.AttributePath.AttributeName, name) {
				return name, v, true
			}
		}
	case *filter.LogicalExpression:
		if strings.EqualFold(string(x.Operator), "and") {
			if a, v, ok := pushdown(x.Left); ok {
				return a, v, true
			}
			return pushdown(x.Right)
		}
	}
	return "", "", false
}
