// Package identity holds keygate's domain types: the people, groups and
// sign-in sessions that every other package talks about. It does no I/O, so
// the access decision, the store and the wire protocols can all share one
// vocabulary without depending on each other.
package identity

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// User is a person known to keygate. UserName is how they identify themselves
// to a database client (the PostgreSQL user name) and is unique without regard
// to case.
type User struct {
	ID          string
	UserName    string
	Email       string
	DisplayName string
	ExternalID  string
	// Active is false for a disabled person: still readable for audit, but
	// holding no access.
	Active bool
	// Attributes are the person's principal tags (department, project,
	// environment, ...) that attribute conditions are evaluated against.
	Attributes map[string]string
	// Profile is the provisioning system's full record of the person (a
	// SCIM document), kept so that it reads back as it was written. Only
	// the SCIM endpoint looks inside.
	Profile  []byte
	Created  time.Time
	Modified time.Time
	// Version increases on every change; it is the basis of ETags.
	Version int64
}

// Group is a named set of people. Groups are the unit of access: assignments
// map a group to a permission set on databases.
type Group struct {
	ID         string
	Name       string
	ExternalID string
	Created    time.Time
	Modified   time.Time
	Version    int64
}

// Member is a person as a group lists them.
type Member struct {
	UserID   string
	UserName string
}

// ProvisioningToken is a bearer credential an identity provider uses to
// push people and groups into keygate (SCIM). Only a hash of the secret is
// ever stored.
type ProvisioningToken struct {
	ID       string
	Name     string // what the admin called it, e.g. "azure-ad"; the audit actor
	Created  time.Time
	Expires  time.Time // zero: never
	Revoked  time.Time
	LastUsed time.Time
}

// ValidAt reports whether the token may be used at t.
func (p ProvisioningToken) ValidAt(t time.Time) bool {
	return p.Revoked.IsZero() && (p.Expires.IsZero() || t.Before(p.Expires))
}

// Membership records one person joining or leaving a group, so that "who was
// in this group at time T" stays answerable after the fact.
type Membership struct {
	Group  string
	User   string
	Joined time.Time
	// Left is zero while the membership lasts.
	Left time.Time
	// Source says who made the change: "admin", a SCIM token name, ...
	Source string
}

// Session is a signed-in person's credential for asking keygate for database
// tokens. Only a hash of the credential is ever stored.
type Session struct {
	ID       string
	User     string
	Created  time.Time
	Expires  time.Time
	Revoked  time.Time
	Source   string
	MFA      bool
	LastUsed time.Time
	// Tags are principal tags the identity provider asserted at sign-in;
	// they override the person's provisioned tags of the same key.
	Tags map[string]string
	// Groups are groups the identity provider asserted at sign-in; they
	// count besides the provisioned ones while the session lasts.
	Groups []string
}

// ValidAt reports whether the session may be used at t.
func (s Session) ValidAt(t time.Time) bool {
	return s.Revoked.IsZero() && t.Before(s.Expires)
}

// Principal is a person as the access decision sees them: who they are, which
// groups they are in and which tags they carry, at one moment.
type Principal struct {
	UserName   string
	Active     bool
	Groups     []string
	Attributes map[string]string
	MFA        bool
}

// InGroup reports whether the principal is a member of the named group.
func (p Principal) InGroup(name string) bool {
	for _, g := range p.Groups {
		if g == name {
			return true
		}
	}
	return false
}

// Name limits. A user name becomes a PostgreSQL role name (at most 63
// bytes) with a level suffix such as ".admin", so it is refused up front
// rather than truncated somewhere downstream. A group name only names a
// group; identity providers use spaces in them.
const (
	maxUserNameLen  = 56
	maxGroupNameLen = 256
)

// ValidateUserName checks a user name: non-empty, at most 56 bytes, and free
// of control characters and whitespace that would make it ambiguous in a
// connection string or a log line.
func ValidateUserName(name string) error {
	return validate("user", name, maxUserNameLen, true)
}

// ValidateGroupName checks a group name: non-empty, at most 256 bytes, no
// control characters, no space at either end.
func ValidateGroupName(name string) error {
	if err := validate("group", name, maxGroupNameLen, false); err != nil {
		return err
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("group name %q starts or ends with a space", name)
	}
	return nil
}

// ValidateTokenName checks the name of a provisioning token, which is shown
// in the audit log as its actor.
func ValidateTokenName(name string) error {
	return validate("token", name, maxUserNameLen, true)
}

func validate(kind, name string, maxLen int, noSpace bool) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > maxLen {
		return fmt.Errorf("%s name %q is longer than %d bytes", kind, name, maxLen)
	}
	if strings.IndexFunc(name, func(r rune) bool {
		return unicode.IsControl(r) || (noSpace && unicode.IsSpace(r)) || r == unicode.ReplacementChar
	}) >= 0 {
		if noSpace {
			return fmt.Errorf("%s name %q contains whitespace or control characters", kind, name)
		}
		return fmt.Errorf("%s name %q contains control characters", kind, name)
	}
	return nil
}
