package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keygate/keygate/identity"
)

// Administrators says who runs keygate's admin API (and `keygate admin`)
// as themselves: the members of Groups, decided on every request from the
// person's provisioned groups and the groups their sign-in asserted, so
// that leaving a group or being disabled takes the rights away at once.
// The admin credential in data_dir stays the way in for bootstrap and
// break-glass. It is applied again on reload.
type Administrators struct {
	// Groups are the groups whose members are administrators; none means
	// that only the data_dir credential administers keygate.
	Groups []string `yaml:"groups" json:"groups"`
	// RequireMFA gives administrator rights only to sessions signed in
	// with a second factor. Sessions made with `keygate admin session
	// create` carry no MFA, so with it on they do not administer.
	RequireMFA bool `yaml:"require_mfa" json:"require_mfa,omitempty"`
}

// Configured reports whether any group's members are administrators.
func (a Administrators) Configured() bool { return len(a.Groups) > 0 }

// Includes reports whether a person in groups (provisioned and asserted at
// sign-in) is an administrator. Group names match exactly, as they do in
// assignments.
func (a Administrators) Includes(groups []string) bool {
	for _, g := range groups {
		if slices.Contains(a.Groups, g) {
			return true
		}
	}
	return false
}

// Equal reports whether a and b name the same administrators.
func (a Administrators) Equal(b Administrators) bool {
	return a.RequireMFA == b.RequireMFA && slices.Equal(a.Groups, b.Groups)
}

// Describe names the groups for a message: "keygate-admins", or
// "keygate-admins or dba-leads".
func (a Administrators) Describe() string {
	return strings.Join(a.Groups, " or ")
}

func (c *Config) validateAdministrators() []error {
	var errs []error
	seen := map[string]bool{}
	for i, g := range c.Administrators.Groups {
		p := fmt.Sprintf("administrators.groups[%d]", i)
		if err := identity.ValidateGroupName(g); err != nil {
			errs = append(errs, c.errorAt(p, "administrators.groups: %v", err))
			continue
		}
		if seen[g] {
			errs = append(errs, c.errorAt(p, "administrators.groups names %s twice", g))
		}
		seen[g] = true
	}
	if c.Administrators.RequireMFA && !c.Administrators.Configured() {
		errs = append(errs, c.errorAt("administrators.require_mfa", "administrators.require_mfa is set but administrators.groups names no group: name the groups whose members are administrators"))
	}
	return errs
}
