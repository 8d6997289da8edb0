package access

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCondition(t *testing.T) {
	tests := []struct {
		src, canonical string
	}{
		{"database.environment == person.environment", "database.environment == person.environment"},
		{"  database.environment==person.environment  ", "database.environment == person.environment"},
		{`database.tier != "gold"`, "database.tier != gold"},
		{"database.tier != gold", "database.tier != gold"},
		{"gold != database.tier", "gold != database.tier"},
		{"person.department in [engineering, data]", "person.department in [engineering, data]"},
		{`person.department in ["engineering","data",]`, "person.department in [engineering, data]"},
		{"person.department not in [contractors]", "person.department not in [contractors]"},
		{"has person.clearance", "has person.clearance"},
		{"not has database.owner", "not has database.owner"},
		{`database.region == "eu-west-1.prod"`, `database.region == "eu-west-1.prod"`},
		{`database.owner == "in"`, `database.owner == "in"`},
		{`database.note == "two words"`, `database.note == "two words"`},
		{`database.note == ""`, `database.note == ""`},
		{`database.note == "say \"hi\""`, `database.note == "say \"hi\""`},
		{"person.team == database.team", "person.team == database.team"},
		{"database.aws:cloudformation:stack-name == person.stack", "database.aws:cloudformation:stack-name == person.stack"},
		{"database.a.b == x", "database.a.b == x"},
		{"person.département == Ingénierie", "person.département == Ingénierie"},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.src)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", tt.src, err)
			continue
		}
		if got := c.String(); got != tt.canonical {
			t.Errorf("ParseCondition(%q).String() = %q, want %q", tt.src, got, tt.canonical)
		}
		again, err := ParseCondition(c.String())
		if err != nil || again.String() != c.String() {
			t.Errorf("canonical %q does not parse back to itself: %q, %v", c.String(), again.String(), err)
		}
	}
}

// TestParseConditionErrors: every mistake names its column, counted in
// characters from 1, and says what to write instead.
func TestParseConditionErrors(t *testing.T) {
	tests := []struct {
		src    string
		column int
		msg    string
	}{
		{"", 1, "empty condition"},
		{"   ", 1, "empty condition"},
		{"database.environment = person.environment", 22, "use == to compare"},
		{"database.environment ! person.environment", 22, "use != or not"},
		{"database.environment", 21, "expected ==, !=, in or not in after database.environment"},
		{"database.environment ==", 24, "expected database.TAG, person.TAG or a value"},
		{"prod == gold", 1, "this compares two values"},
		{"persn.team == database.team", 1, `"persn.team" is neither database.TAG nor person.TAG`},
		{"database == prod", 1, "database needs a tag"},
		{"database. == prod", 1, "database. needs a tag name"},
		{"person.department in engineering", 22, "expected a list"},
		{"person.department in []", 23, "the list is empty"},
		{"person.department in [a b]", 25, "expected , or ] in the list"},
		{"person.department in [a, person.team]", 26, "a list holds values, not person.team"},
		{"person.department in [a", 24, "expected , or ] in the list"},
		{"engineering in [a]", 1, "engineering is a value: in tests database.TAG or person.TAG"},
		{"has prod", 5, "has needs database.TAG or person.TAG"},
		{"not database.a == b", 5, "expected has after a leading not"},
		{`database.a == "gold`, 15, "no closing quote"},
		{`database.a == "\q"`, 15, "does not parse"},
		{"database.a == b c", 17, `unexpected "c" after the condition`},
		{"database.a == b; drop", 16, `unexpected ';'`},
		{"database.a == in", 15, `"in" is a keyword here`},
		{"é.a == b", 1, "neither database.TAG nor person.TAG"},
		{"person.x == café; y", 17, `unexpected ';'`},
		{"database.a not == b", 12, "expected ==, !=, in or not in after database.a"},
	}
	for _, tt := range tests {
		_, err := ParseCondition(tt.src)
		var ce *ConditionError
		if !errors.As(err, &ce) {
			t.Errorf("ParseCondition(%q) = %v, want a *ConditionError", tt.src, err)
			continue
		}
		if ce.Column != tt.column || !strings.Contains(ce.Msg, tt.msg) {
			t.Errorf("ParseCondition(%q): column %d %q; want column %d %q", tt.src, ce.Column, ce.Msg, tt.column, tt.msg)
		}
		if !strings.HasPrefix(err.Error(), "column ") {
			t.Errorf("error %q does not start with its column", err)
		}
	}
	if _, err := ParseCondition("database.a == " + strings.Repeat("x", maxConditionLen)); err == nil {
		t.Error("a condition over the length limit parsed")
	}
	if _, err := ParseCondition("database.a == \xff"); err == nil {
		t.Error("a condition that is not UTF-8 parsed")
	}
}

// TestConditionHolds: a missing tag makes every comparison false, != and
// not in included; has and not has test for it.
func TestConditionHolds(t *testing.T) {
	prod := map[string]string{"environment": "prod", "tier": "gold"}
	alice := map[string]string{"environment": "prod", "department": "data"}
	bob := map[string]string{"environment": "dev"}
	none := map[string]string(nil)
	tests := []struct {
		cond   string
		person map[string]string
		db     map[string]string
		want   bool
	}{
		{"database.environment == person.environment", alice, prod, true},
		{"database.environment == person.environment", bob, prod, false},
		{"database.environment == person.environment", none, prod, false},
		{"database.environment == person.environment", alice, none, false},
		{"database.environment != person.environment", bob, prod, true},
		{"database.environment != person.environment", alice, prod, false},
		{"database.environment != person.environment", none, prod, false},
		{"database.tier != silver", alice, prod, true},
		{"database.tier != silver", alice, none, false},
		{"silver != database.tier", alice, prod, true},
		{"person.department in [engineering, data]", alice, prod, true},
		{"person.department in [engineering, data]", bob, prod, false},
		{"person.department not in [engineering]", alice, prod, true},
		{"person.department not in [data]", alice, prod, false},
		{"person.department not in [data]", bob, prod, false},
		{"has person.department", alice, prod, true},
		{"has person.department", bob, prod, false},
		{"not has person.department", bob, prod, true},
		{"not has person.department", alice, prod, false},
		{"person.environment == person.environment", alice, prod, true},
		{"person.environment == person.environment", none, prod, false},
		{`database.tier == ""`, alice, map[string]string{"tier": ""}, true},
		{`database.tier == ""`, alice, none, false},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.cond)
		if err != nil {
			t.Fatalf("ParseCondition(%q): %v", tt.cond, err)
		}
		if got := c.holds(tt.person, tt.db); got != tt.want {
			t.Errorf("%s with person %v, database %v = %v, want %v", tt.cond, tt.person, tt.db, got, tt.want)
		}
	}
}

func TestConditions(t *testing.T) {
	var zero Conditions
	if zero.Len() != 0 || zero.Strings() != nil || len(zero.list()) != 0 {
		t.Errorf("zero Conditions = %d %q", zero.Len(), zero.Strings())
	}
	a, err := ParseConditions("database.environment==person.environment", `person.department in [data, "x y"]`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseConditions("database.environment == person.environment", `person.department in ["data", "x y"]`)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("the same conditions written differently compare unequal: %q, %q", a.Strings(), b.Strings())
	}
	if a.Len() != 2 || a.Strings()[1] != `person.department in [data, "x y"]` {
		t.Errorf("Conditions = %d %q", a.Len(), a.Strings())
	}
	// A newline in a value is escaped, so the list stays one per line.
	nl, err := ParseConditions(`database.note == "a\nb"`, "has person.x")
	if err != nil || nl.Len() != 2 || len(nl.list()) != 2 {
		t.Fatalf("Conditions with an escaped newline: %q, %v", nl.Strings(), err)
	}
	if _, err := ParseConditions("has person.x", "database.x = y"); err == nil || !strings.Contains(err.Error(), `condition "database.x = y": column 12: use == to compare`) {
		t.Errorf("ParseConditions error = %v", err)
	}
	if NewConditions(Condition{}) != zero {
		t.Error("a zero Condition made a non-empty list")
	}
}

func TestConditionDatabaseTags(t *testing.T) {
	for src, want := range map[string]string{
		"database.environment == person.environment": "environment",
		"database.a != database.b":                   "a,b",
		"database.a == database.a":                   "a",
		"person.x in [a]":                            "",
		"has database.owner":                         "owner",
		"prod == database.env":                       "env",
	} {
		c, err := ParseCondition(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(c.DatabaseTags(), ","); got != want {
			t.Errorf("%s: DatabaseTags = %q, want %q", src, got, want)
		}
	}
}
