// Package sso signs people in through their company identity provider and
// turns what the provider asserts into a keygate sign-in session.
//
// The identity providers are connectors (SAML 2.0 in sso/saml, OpenID
// Connect in sso/oidc) that each end in an Identity. Everything after that
// is shared: the mapping of attributes to a user name, email, groups and
// principal tags; matching a provisioned person; MFA; the session; the
// audit event. The CLI reaches all of it through the OAuth 2.0 Device
// Authorization Grant (RFC 8628) that this package serves, so that
// `keygate login` works the same whichever provider the browser goes to.
package sso

import (
	"errors"
	"fmt"
	"time"
)

// Identity is who an identity provider says signed in, after the
// attribute mapping.
type Identity struct {
	// Method is "saml" or "oidc".
	Method string
	// Subject is the provider's own identifier: the SAML NameID or the
	// OIDC sub claim.
	Subject  string
	UserName string
	Email    string
	Groups   []string
	Tags     map[string]string
	// MFA reports that the provider says the person used more than one
	// factor for this sign-in.
	MFA bool
	// NotAfter is when the provider wants the session to end at the
	// latest (SAML SessionNotOnOrAfter); zero when it does not say.
	NotAfter time.Time
}

// Refusal is a sign-in that was refused. Code names the check that failed
// and is what the audit log and metrics carry; Reason is a sentence safe to
// show the person; Err is the detail for the server log.
type Refusal struct {
	Code   string
	Reason string
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("%s: %s: %v", r.Code, r.Reason, r.Err)
	}
	return fmt.Sprintf("%s: %s", r.Code, r.Reason)
}

func (r *Refusal) Unwrap() error { return r.Err }

// Refuse makes a Refusal.
func Refuse(code string, err error, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Reason: fmt.Sprintf(format, args...), Err: err}
}

// AsRefusal finds the Refusal in err, or makes one with code "error" for an
// error that is not a refusal (a provider that cannot be reached, say).
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return &Refusal{Code: "error", Reason: "sign-in failed; the keygate server log has details", Err: err}
}
