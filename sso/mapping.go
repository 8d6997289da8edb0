package sso

import (
	"slices"
	"strings"
)

// Claims are what a provider asserted: SAML attributes or OIDC claims, by
// name, every value as a string.
type Claims map[string][]string

// PrincipalTagPrefix starts the SAML attribute names that AWS IAM Identity
// Center reads as principal tags; keygate reads them the same way, so an
// identity provider application set up for AWS carries over unchanged.
const PrincipalTagPrefix = "https://aws.amazon.com/SAML/Attributes/PrincipalTag:"

// Claim names that carry the authentication methods used: OIDC's amr
// (RFC 8176) and Azure AD's SAML claim.
const (
	ClaimAMR          = "amr"
	ClaimAzureMethods = "http://schemas.microsoft.com/claims/authnmethodsreferences"
)

// defaultEmailClaims are tried in order when the mapping names no email
// attribute: Azure AD's claim URI, the OIDC claim, and the LDAP-style names
// Okta and others send.
var defaultEmailClaims = []string{
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
	"email",
	"mail",
	"urn:oid:0.9.2342.19200300.100.1.3",
}

// Mapping names the attributes (or claims) that carry a person's identity.
type Mapping struct {
	// UserName is the attribute holding the user name; empty means the
	// subject (SAML NameID, OIDC sub).
	UserName string
	Email    string
	Groups   string
	// Tags maps a principal tag key to the attribute holding its value.
	Tags map[string]string
}

// get returns the values of name, matched exactly or else ignoring case
// (identity providers differ in how they capitalise claim names).
func (c Claims) get(name string) []string {
	if v, ok := c[name]; ok {
		return v
	}
	for k, v := range c {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func (c Claims) first(name string) string {
	if v := c.get(name); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// Identity applies the mapping to what a provider asserted about subject.
func (m Mapping) Identity(method, subject string, c Claims) (Identity, error) {
	id := Identity{Method: method, Subject: subject, Tags: map[string]string{}}
	if m.UserName == "" {
		id.UserName = strings.TrimSpace(subject)
	} else if id.UserName = c.first(m.UserName); id.UserName == "" {
		return Identity{}, Refuse("attribute_missing", nil, "the identity provider sent no %q attribute, which keygate maps to the user name: add it to the application's attribute mapping", m.UserName)
	}
	if id.UserName == "" {
		return Identity{}, Refuse("attribute_missing", nil, "the identity provider sent no user name")
	}
	if m.Email != "" {
		id.Email = c.first(m.Email)
	} else {
		for _, name := range defaultEmailClaims {
			if id.Email = c.first(name); id.Email != "" {
				break
			}
		}
	}
	if m.Groups != "" {
		for _, g := range c.get(m.Groups) {
			if g = strings.TrimSpace(g); g != "" && !slices.Contains(id.Groups, g) {
				id.Groups = append(id.Groups, g)
			}
		}
	}
	for name, values := range c {
		key, ok := cutPrefixFold(name, PrincipalTagPrefix)
		if !ok {
			continue
		}
		if err := setTag(id.Tags, key, name, values); err != nil {
			return Identity{}, err
		}
	}
	for key, name := range m.Tags {
		if values := c.get(name); len(values) > 0 {
			if err := setTag(id.Tags, key, name, values); err != nil {
				return Identity{}, err
			}
		}
	}
	id.MFA = MethodsShowMFA(append(c.get(ClaimAMR), c.get(ClaimAzureMethods)...))
	return id, nil
}

// setTag sets tag key from attribute name. A principal tag has one value,
// as in AWS: several would leave an attribute condition ambiguous.
func setTag(tags map[string]string, key, name string, values []string) error {
	key = strings.TrimSpace(key)
	if key == "" {
		return Refuse("attribute_invalid", nil, "attribute %q names an empty principal tag", name)
	}
	if len(values) != 1 {
		return Refuse("attribute_invalid", nil, "attribute %q carries %d values; a principal tag takes exactly one", name, len(values))
	}
	tags[key] = strings.TrimSpace(values[0])
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// mfaMethods are authentication method references that mean more than one
// factor: RFC 8176's mfa, otp and hwk, and Azure AD's multipleauthn.
var mfaMethods = []string{"mfa", "otp", "hwk", "http://schemas.microsoft.com/claims/multipleauthn", "multipleauthn"}

// MethodsShowMFA reports whether any authentication method reference
// shows multi-factor authentication.
func MethodsShowMFA(methods []string) bool {
	for _, m := range methods {
		if slices.ContainsFunc(mfaMethods, func(x string) bool { return strings.EqualFold(strings.TrimSpace(m), x) }) {
			return true
		}
	}
	return false
}
