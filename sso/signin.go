package sso

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// signIn turns an identity into a sign-in session: it finds the
// provisioned person (or creates them, when just-in-time creation is on),
// and stores a session that carries what the provider asserted. It returns
// the session's credential, shown once to the CLI or handed to the portal.
// detail adds to the audit event's: which client the session is for.
func (s *Service) signIn(ctx context.Context, id Identity, client string, detail map[string]any) (string, identity.Session, error) {
	u, err := s.match(ctx, id)
	if err != nil {
		return "", identity.Session{}, err
	}
	if !u.Active {
		return "", identity.Session{}, Refuse("user_disabled", nil, "%s is disabled in keygate", u.UserName)
	}
	now := s.now()
	sess := identity.Session{User: u.UserName, Created: now, Expires: now.Add(s.opts.SessionDuration), Source: id.Method, MFA: id.MFA, Tags: id.Tags, Groups: id.Groups}
	if !id.NotAfter.IsZero() && id.NotAfter.Before(sess.Expires) {
		sess.Expires = id.NotAfter
	}
	if !sess.Expires.After(now) {
		return "", identity.Session{}, Refuse("expired", nil, "the identity provider's session has already ended")
	}
	cred := credential.New(credential.SessionPrefix)
	hash := credential.Hash(cred)
	sess, err = s.opts.Store.CreateSession(ctx, sess, hash[:])
	if err != nil {
		return "", identity.Session{}, fmt.Errorf("sign in %s: %w", u.UserName, err)
	}
	tagKeys := make([]string, 0, len(id.Tags))
	for k := range id.Tags {
		tagKeys = append(tagKeys, k)
	}
	sort.Strings(tagKeys)
	d := map[string]any{"method": id.Method, "subject": id.Subject, "mfa": id.MFA, "tags": id.Tags, "groups": id.Groups, "expires_at": sess.Expires}
	for k, v := range detail {
		d[k] = v
	}
	s.opts.Audit.Record(audit.Event{Type: audit.SignIn, User: sess.User, Client: client, SessionID: sess.ID, Detail: d})
	s.opts.Log.Info("signed in", "user", sess.User, "method", id.Method, "mfa", id.MFA, "session", sess.ID, "tags", strings.Join(tagKeys, ","))
	return cred, sess, nil
}

// match finds the provisioned person the identity is, by the configured
// field.
func (s *Service) match(ctx context.Context, id Identity) (identity.User, error) {
	var (
		found []identity.User
		err   error
		by    = s.opts.MatchBy
		value = id.UserName
	)
	switch by {
	case config.MatchEmail:
		value = id.Email
		if value == "" {
			return identity.User{}, Refuse("attribute_missing", nil, "the identity provider sent no email address, and keygate matches people by email")
		}
		found, err = s.opts.Store.ListUsers(ctx, store.UserQuery{Email: value})
	case config.MatchExternalID:
		// An empty query selects every user, so an empty value must not
		// reach it.
		if value == "" {
			return identity.User{}, Refuse("attribute_missing", nil, "the identity provider sent no user name, which keygate matches against people's externalId")
		}
		found, err = s.opts.Store.ListUsers(ctx, store.UserQuery{ExternalID: value})
	default:
		var u identity.User
		u, err = s.opts.Store.GetUserByName(ctx, value)
		if err == nil {
			found = []identity.User{u}
		} else if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return identity.User{}, fmt.Errorf("match %s %q: %w", by, value, err)
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return identity.User{}, Refuse("ambiguous_user", nil, "%d keygate users have %s %q; make it unique", len(found), by, value)
	case !s.opts.JITUsers:
		return identity.User{}, Refuse("unknown_user", nil, "%q is not a keygate user: provision them through SCIM first (or switch on sso.jit_users)", value)
	}
	if err := identity.ValidateUserName(id.UserName); err != nil {
		return identity.User{}, Refuse("attribute_invalid", err, "cannot create %q: %v", id.UserName, err)
	}
	u, err := s.opts.Store.CreateUser(ctx, identity.User{UserName: id.UserName, Email: id.Email, Active: true, ExternalID: externalID(by, value)})
	if errors.Is(err, store.ErrAlreadyExists) {
		return identity.User{}, Refuse("ambiguous_user", err, "a keygate user named %q exists but does not match this sign-in's %s", id.UserName, by)
	}
	if err != nil {
		return identity.User{}, fmt.Errorf("create %q at sign-in: %w", id.UserName, err)
	}
	s.opts.Audit.Record(audit.Event{Type: audit.AdminPrefix + ".user.create", Actor: "sso:" + id.Method, User: u.UserName, Detail: map[string]any{"jit": true}})
	return u, nil
}

func externalID(by, value string) string {
	if by == config.MatchExternalID {
		return value
	}
	return ""
}
