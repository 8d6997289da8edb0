package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAdministrators(t *testing.T) {
	if c := mustParse(t, minimal); c.Administrators.Configured() {
		t.Errorf("administrators without the section: %+v", c.Administrators)
	}
	c := mustParse(t, minimal+"administrators:\n  groups: [keygate-admins, dba leads]\n  require_mfa: true\n")
	a := c.Administrators
	if !slices.Equal(a.Groups, []string{"keygate-admins", "dba leads"}) || !a.RequireMFA {
		t.Fatalf("administrators = %+v", a)
	}
	for groups, want := range map[string]bool{
		"keygate-admins": true, "analysts,dba leads": true, "analysts": false, "": false,
		// Names match exactly, as in assignments.
		"Keygate-Admins": false, "keygate-admins ": false,
	} {
		var in []string
		if groups != "" {
			in = strings.Split(groups, ",")
		}
		if got := a.Includes(in); got != want {
			t.Errorf("Includes(%q) = %v, want %v", in, got, want)
		}
	}
	if got := a.Describe(); got != "keygate-admins or dba leads" {
		t.Errorf("Describe = %q", got)
	}
	if a.Equal(Administrators{Groups: a.Groups}) || !a.Equal(Administrators{Groups: []string{"keygate-admins", "dba leads"}, RequireMFA: true}) {
		t.Error("Equal does not compare groups and require_mfa")
	}
	r, err := c.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if r.Administrators == nil || !r.Administrators.Equal(a) {
		t.Errorf("the rules kept in the config history lack the administrators: %+v", r.Administrators)
	}
	// Rules of a config without administrators encode as they did before
	// the section existed, so their digest does not change.
	r, err = mustParse(t, minimal).Rules()
	if err != nil {
		t.Fatal(err)
	}
	if data, _, err := r.Encode(); err != nil || strings.Contains(string(data), "administrators") {
		t.Errorf("rules without administrators encode as %s (%v)", data, err)
	}
}

func TestAdministratorsRefused(t *testing.T) {
	for in, want := range map[string]string{
		"groups: [keygate-admins, keygate-admins]": ":3: administrators.groups names keygate-admins twice",
		`groups: ["", x]`:                          ":3: administrators.groups: group name is empty",
		`groups: [" admins"]`:                      `:3: administrators.groups: group name " admins" starts or ends with a space`,
		"require_mfa: true":                        ":3: administrators.require_mfa is set but administrators.groups names no group",
		"group: [keygate-admins]":                  `:3: unknown key "group"; did you mean "groups"?`,
	} {
		msg := parseErr(t, minimal+"administrators:\n  "+in+"\n")
		if !strings.Contains(msg, want) {
			t.Errorf("administrators %s: %q, want it to contain %q", in, msg, want)
		}
	}
}
