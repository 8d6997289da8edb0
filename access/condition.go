package access

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A Condition is one attribute rule of a permission set or a deny rule,
// written in a deliberately small language so that a config reviewer can
// read every rule at a glance:
//
//	database.environment == person.environment
//	database.tier != gold
//	person.department in [engineering, data]
//	person.department not in [contractors]
//	has person.clearance
//	not has database.owner
//
// database.TAG is a tag of the database, person.TAG a principal tag of the
// person; anything else is a value, quoted ("gold") or bare (gold). A bare
// value may not contain a dot, so that a misspelt reference such as
// persn.team is an error rather than a value that never matches.
//
// A tag that is absent makes every comparison that reads it false: ==, !=,
// in and not in alike. Absent means not granted, so a missing tag never
// opens access; has and not has are the way to test for absence. The flip
// side is that in a deny rule a comparison on a missing tag does not match
// either: to deny people who lack a tag, say so with not has.
type Condition struct {
	op    op
	left  operand
	right operand  // ==, !=
	list  []string // in, not in
	text  string   // canonical form
}

type op int

const (
	opEqual op = iota + 1
	opNotEqual
	opIn
	opNotIn
	opHas
	opNotHas
)

// source says where an operand's value comes from.
type source int

const (
	literal source = iota
	databaseTag
	personTag
)

// operand is a reference to a tag (its key in value) or a literal.
type operand struct {
	src   source
	value string
}

func (o operand) isRef() bool { return o.src != literal }

// lookup returns the operand's value for person and database tags; ok is
// false when it refers to a tag that is absent.
func (o operand) lookup(person, db map[string]string) (string, bool) {
	switch o.src {
	case databaseTag:
		v, ok := db[o.value]
		return v, ok
	case personTag:
		v, ok := person[o.value]
		return v, ok
	}
	return o.value, true
}

func (o operand) String() string {
	switch o.src {
	case databaseTag:
		return "database." + o.value
	case personTag:
		return "person." + o.value
	}
	return quoteValue(o.value)
}

// holds evaluates the condition against the person's and the database's
// tags. It is the same rule as the Cedar the condition compiles to; the
// explanation of a decision uses it to say which condition failed.
func (c Condition) holds(person, db map[string]string) bool {
	l, lok := c.left.lookup(person, db)
	switch c.op {
	case opHas:
		return lok
	case opNotHas:
		return !lok
	case opIn:
		return lok && slices.Contains(c.list, l)
	case opNotIn:
		return lok && !slices.Contains(c.list, l)
	}
	r, rok := c.right.lookup(person, db)
	if !lok || !rok {
		return false
	}
	if c.op == opEqual {
		return l == r
	}
	return l != r
}

// DatabaseTags lists the keys of the database tags the condition reads,
// so that a config can check them against the databases it knows.
func (c Condition) DatabaseTags() []string {
	var out []string
	for _, o := range c.refs() {
		if o.src == databaseTag {
			out = append(out, o.value)
		}
	}
	return out
}

// refs lists the tags the condition reads, left first.
func (c Condition) refs() []operand {
	switch {
	case !c.right.isRef() || c.right == c.left:
		return []operand{c.left}
	case !c.left.isRef():
		return []operand{c.right}
	}
	return []operand{c.left, c.right}
}

// String is the condition in canonical form: single spaces, values bare
// where that reads the same and quoted otherwise. Parsing it gives the same
// condition back.
func (c Condition) String() string { return c.text }

func (c Condition) canonical() string {
	switch c.op {
	case opHas:
		return "has " + c.left.String()
	case opNotHas:
		return "not has " + c.left.String()
	case opIn, opNotIn:
		vals := make([]string, len(c.list))
		for i, v := range c.list {
			vals[i] = quoteValue(v)
		}
		kw := " in ["
		if c.op == opNotIn {
			kw = " not in ["
		}
		return c.left.String() + kw + strings.Join(vals, ", ") + "]"
	case opEqual:
		return c.left.String() + " == " + c.right.String()
	case opNotEqual:
		return c.left.String() + " != " + c.right.String()
	}
	return ""
}

// keywords may not be bare values: they would read as part of the syntax.
var keywords = []string{"in", "not", "has", "database", "person"}

// quoteValue writes a value bare when it is a plain word and quoted
// otherwise.
func quoteValue(v string) string {
	if v == "" || slices.Contains(keywords, v) || strings.Contains(v, ".") {
		return strconv.Quote(v)
	}
	for _, r := range v {
		if !isWordRune(r) {
			return strconv.Quote(v)
		}
	}
	return v
}

// isWordRune reports whether r may appear in a bare value or a tag key
// (which may also contain dots).
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-:/@+", r)
}

// ConditionError is a condition that does not parse. Column counts
// characters from 1 at the start of the condition.
type ConditionError struct {
	Column int
	Msg    string
}

func (e *ConditionError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// maxConditionLen bounds a condition; config input, but a bound keeps the
// parser's cost obvious.
const maxConditionLen = 4096

// ParseCondition parses one condition.
func ParseCondition(src string) (Condition, error) {
	if len(src) > maxConditionLen {
		return Condition{}, &ConditionError{Column: 1, Msg: fmt.Sprintf("a condition is at most %d bytes", maxConditionLen)}
	}
	if !utf8.ValidString(src) {
		return Condition{}, &ConditionError{Column: 1, Msg: "a condition must be UTF-8 text"}
	}
	toks, err := lex(src)
	if err != nil {
		return Condition{}, err
	}
	p := parser{toks: toks, end: utf8.RuneCountInString(src) + 1}
	c, err := p.condition()
	if err != nil {
		return Condition{}, err
	}
	c.text = c.canonical()
	return c, nil
}

type tokKind int

const (
	tokWord tokKind = iota + 1
	tokString
	tokEq
	tokNe
	tokOpen
	tokClose
	tokComma
)

type token struct {
	kind tokKind
	text string // a word as written, or a string's value
	col  int
}

func lex(src string) ([]token, error) {
	var toks []token
	col := 0
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		col++
		start := col
		switch {
		case unicode.IsSpace(r):
			i += size
		case r == '=' || r == '!':
			if i+1 < len(src) && src[i+1] == '=' {
				kind := tokEq
				if r == '!' {
					kind = tokNe
				}
				toks = append(toks, token{kind: kind, text: src[i : i+2], col: start})
				i += 2
				col++
				continue
			}
			if r == '=' {
				return nil, &ConditionError{Column: start, Msg: "use == to compare"}
			}
			return nil, &ConditionError{Column: start, Msg: "use != or not"}
		case r == '[':
			toks = append(toks, token{kind: tokOpen, text: "[", col: start})
			i += size
		case r == ']':
			toks = append(toks, token{kind: tokClose, text: "]", col: start})
			i += size
		case r == ',':
			toks = append(toks, token{kind: tokComma, text: ",", col: start})
			i += size
		case r == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, &ConditionError{Column: start, Msg: "this string has no closing quote"}
			}
			v, err := strconv.Unquote(src[i : j+1])
			if err != nil {
				return nil, &ConditionError{Column: start, Msg: `this string does not parse: write \" for a quote and \\ for a backslash`}
			}
			toks = append(toks, token{kind: tokString, text: v, col: start})
			col += utf8.RuneCountInString(src[i+size : j+1])
			i = j + 1
		case isWordRune(r) || r == '.':
			j := i
			for j < len(src) {
				r, size := utf8.DecodeRuneInString(src[j:])
				if !isWordRune(r) && r != '.' {
					break
				}
				j += size
			}
			toks = append(toks, token{kind: tokWord, text: src[i:j], col: start})
			col += utf8.RuneCountInString(src[i:j]) - 1
			i = j
		default:
			return nil, &ConditionError{Column: start, Msg: fmt.Sprintf("unexpected %q", r)}
		}
	}
	return toks, nil
}

type parser struct {
	toks []token
	pos  int
	end  int // the column just past the end, for "expected ..." at the end
}

func (p *parser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{col: p.end}, false
}

func (p *parser) next() (token, bool) {
	t, ok := p.peek()
	if ok {
		p.pos++
	}
	return t, ok
}

func (p *parser) isWord(w string) bool {
	t, ok := p.peek()
	return ok && t.kind == tokWord && t.text == w
}

func errAt(t token, format string, args ...any) error {
	return &ConditionError{Column: t.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) condition() (Condition, error) {
	if _, ok := p.peek(); !ok {
		return Condition{}, errAt(token{col: 1}, "empty condition: write one such as database.environment == person.environment")
	}
	var c Condition
	var err error
	switch {
	case p.isWord("has"):
		p.next()
		c.op = opHas
		c.left, err = p.ref("has")
	case p.isWord("not"):
		p.next()
		if !p.isWord("has") {
			t, _ := p.peek()
			return Condition{}, errAt(t, "expected has after a leading not")
		}
		p.next()
		c.op = opNotHas
		c.left, err = p.ref("not has")
	default:
		c, err = p.comparison()
	}
	if err != nil {
		return Condition{}, err
	}
	if t, ok := p.peek(); ok {
		return Condition{}, errAt(t, "unexpected %q after the condition", t.text)
	}
	return c, nil
}

func (p *parser) comparison() (Condition, error) {
	first, _ := p.peek()
	left, err := p.operand()
	if err != nil {
		return Condition{}, err
	}
	c := Condition{left: left}
	t, ok := p.next()
	switch {
	case ok && (t.kind == tokEq || t.kind == tokNe):
		c.op = opEqual
		if t.kind == tokNe {
			c.op = opNotEqual
		}
		if c.right, err = p.operand(); err != nil {
			return Condition{}, err
		}
		if !c.left.isRef() && !c.right.isRef() {
			return Condition{}, errAt(first, "this compares two values: one side must be database.TAG or person.TAG")
		}
		return c, nil
	case ok && t.kind == tokWord && t.text == "in":
		c.op = opIn
	case ok && t.kind == tokWord && t.text == "not" && p.isWord("in"):
		p.next()
		c.op = opNotIn
	default:
		return Condition{}, errAt(t, "expected ==, !=, in or not in after %s", left)
	}
	if !left.isRef() {
		return Condition{}, errAt(first, "%s is a value: in tests database.TAG or person.TAG", left)
	}
	if c.list, err = p.list(); err != nil {
		return Condition{}, err
	}
	return c, nil
}

// ref parses an operand that must be a tag reference.
func (p *parser) ref(after string) (operand, error) {
	t, _ := p.peek()
	o, err := p.operand()
	if err != nil {
		return operand{}, err
	}
	if !o.isRef() {
		return operand{}, errAt(t, "%s needs database.TAG or person.TAG", after)
	}
	return o, nil
}

func (p *parser) operand() (operand, error) {
	t, ok := p.next()
	if !ok {
		return operand{}, errAt(t, "expected database.TAG, person.TAG or a value")
	}
	switch t.kind {
	case tokString:
		return operand{src: literal, value: t.text}, nil
	case tokWord:
		return word(t)
	}
	return operand{}, errAt(t, "expected database.TAG, person.TAG or a value, not %q", t.text)
}

// word reads a bare word: a tag reference, or a value.
func word(t token) (operand, error) {
	prefix, key, dotted := strings.Cut(t.text, ".")
	switch {
	case dotted && (prefix == "database" || prefix == "person"):
		if key == "" {
			return operand{}, errAt(t, "%s. needs a tag name, as in %s.environment", prefix, prefix)
		}
		src := databaseTag
		if prefix == "person" {
			src = personTag
		}
		return operand{src: src, value: key}, nil
	case dotted:
		return operand{}, errAt(t, "%q is neither database.TAG nor person.TAG; quote a value that contains a dot", t.text)
	case t.text == "database" || t.text == "person":
		return operand{}, errAt(t, "%s needs a tag, as in %s.environment", t.text, t.text)
	case slices.Contains(keywords, t.text):
		return operand{}, errAt(t, "%q is a keyword here; quote it to use it as a value", t.text)
	}
	return operand{src: literal, value: t.text}, nil
}

func (p *parser) list() ([]string, error) {
	t, ok := p.next()
	if !ok || t.kind != tokOpen {
		return nil, errAt(t, "expected a list such as [engineering, data]")
	}
	var out []string
	for {
		t, ok := p.peek()
		if ok && t.kind == tokClose && len(out) > 0 {
			p.next()
			return out, nil
		}
		if ok && t.kind == tokClose {
			return nil, errAt(t, "the list is empty, so this can never match")
		}
		o, err := p.operand()
		if err != nil {
			return nil, err
		}
		if o.isRef() {
			return nil, errAt(t, "a list holds values, not %s", o)
		}
		out = append(out, o.value)
		t, ok = p.next()
		switch {
		case ok && t.kind == tokComma:
		case ok && t.kind == tokClose:
			return out, nil
		default:
			return nil, errAt(t, "expected , or ] in the list")
		}
	}
}
