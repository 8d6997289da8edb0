package sso_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/store"
)

// provisioned are the people SCIM would have created.
var provisioned = []identity.User{
	{UserName: "alice", Email: "alice@contoso.com", ExternalID: "00u-alice", Active: true},
	{UserName: "bob", Email: "bob@contoso.com", ExternalID: "00u-bob", Active: true},
	{UserName: "carol", Email: "carol@contoso.com", ExternalID: "00u-carol", Active: false},
	{UserName: "dave", Email: "shared@contoso.com", Active: true},
	{UserName: "erin", Email: "Shared@Contoso.com", Active: true},
}

// signInAs runs a device flow whose identity provider asserts id and
// returns the session's user, or the refusal's code.
func signInAs(t *testing.T, e *env, id sso.Identity) (user, refusal string) {
	t.Helper()
	dc := e.deviceCode()
	rec := e.signInSAML(dc.UserCode, id, nil)
	a := e.poll(dc.DeviceCode)
	switch {
	case rec.Code == http.StatusOK && a.Status == http.StatusOK:
		if s := sessionOf(t, e, a.AccessToken); s.User != a.Session.User {
			t.Fatalf("the credential is %s's session, the CLI was told %s", s.User, a.Session.User)
		}
		return a.Session.User, ""
	case rec.Code == http.StatusForbidden && a.Error == "access_denied":
		evs := e.events(audit.SignInRefused)
		return "", detail(t, evs[len(evs)-1])["code"].(string)
	}
	t.Fatalf("browser got %d, CLI got %d %s", rec.Code, a.Status, a.Error)
	return "", ""
}

func TestSignInMatching(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matchBy string
		id      sso.Identity
		user    string // the session's user; empty for a refusal
		refusal string
	}{
		{"userName", config.MatchUserName, sso.Identity{UserName: "alice"}, "alice", ""},
		{"userName in another case", config.MatchUserName, sso.Identity{UserName: "ALICE"}, "alice", ""},
		{"userName is not email", config.MatchUserName, sso.Identity{UserName: "alice@contoso.com", Email: "alice@contoso.com"}, "", "unknown_user"},
		{"unknown userName", config.MatchUserName, sso.Identity{UserName: "mallory"}, "", "unknown_user"},
		{"disabled", config.MatchUserName, sso.Identity{UserName: "carol"}, "", "user_disabled"},

		{"email", config.MatchEmail, sso.Identity{UserName: "a.smith", Email: "alice@contoso.com"}, "alice", ""},
		{"email in another case", config.MatchEmail, sso.Identity{UserName: "a.smith", Email: "Alice@CONTOSO.com"}, "alice", ""},
		{"no email asserted", config.MatchEmail, sso.Identity{UserName: "alice"}, "", "attribute_missing"},
		{"email of two people", config.MatchEmail, sso.Identity{UserName: "dave", Email: "shared@contoso.com"}, "", "ambiguous_user"},
		{"unknown email", config.MatchEmail, sso.Identity{UserName: "alice", Email: "alice@fabrikam.com"}, "", "unknown_user"},
		{"disabled by email", config.MatchEmail, sso.Identity{UserName: "c", Email: "carol@contoso.com"}, "", "user_disabled"},

		{"externalId", config.MatchExternalID, sso.Identity{UserName: "00u-bob"}, "bob", ""},
		{"externalId is not userName", config.MatchExternalID, sso.Identity{UserName: "bob"}, "", "unknown_user"},
		{"no externalId asserted", config.MatchExternalID, sso.Identity{Subject: "00u-bob"}, "", "attribute_missing"},
		{"disabled by externalId", config.MatchExternalID, sso.Identity{UserName: "00u-carol"}, "", "user_disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *sso.Options) { o.MatchBy = tc.matchBy })
			for _, u := range provisioned {
				e.addUser(u)
			}
			tc.id.Method = "saml"
			user, refusal := signInAs(t, e, tc.id)
			if user != tc.user || refusal != tc.refusal {
				t.Fatalf("signed in as %q, refused %q; want %q, %q", user, refusal, tc.user, tc.refusal)
			}
			if refusal != "" && len(e.events(audit.SignIn)) != 0 {
				t.Error("a refused sign-in was audited as a sign-in")
			}
			if all, err := e.store.ListUsers(context.Background(), store.UserQuery{}); err != nil || len(all) != len(provisioned) {
				t.Errorf("%d users after sign-in (%v), want %d: nobody is created without jit_users", len(all), err, len(provisioned))
			}
		})
	}
}

// TestExternalIDMatchNeedsAValue checks that an identity with no user name
// is refused when matching by externalId, rather than turning into a query
// with no filter, which selects every user and so signs in as the only one.
func TestExternalIDMatchNeedsAValue(t *testing.T) {
	for _, jit := range []bool{false, true} {
		e := newEnv(t, func(o *sso.Options) { o.MatchBy, o.JITUsers = config.MatchExternalID, jit })
		e.addUser(identity.User{UserName: "root-admin", ExternalID: "00u-admin", Active: true})
		if user, refusal := signInAs(t, e, sso.Identity{Method: "saml", Subject: "anyone"}); user != "" || refusal != "attribute_missing" {
			t.Errorf("jit %v: signed in as %q, refused %q; want refused attribute_missing", jit, user, refusal)
		}
	}
}

func TestJITUsers(t *testing.T) {
	for _, tc := range []struct {
		matchBy    string
		id         sso.Identity
		externalID string
	}{
		{config.MatchUserName, sso.Identity{UserName: "frank@contoso.com", Email: "frank@contoso.com"}, ""},
		{config.MatchEmail, sso.Identity{UserName: "frank", Email: "frank@contoso.com"}, ""},
		{config.MatchExternalID, sso.Identity{UserName: "00u-frank", Email: "frank@contoso.com"}, "00u-frank"},
	} {
		t.Run(tc.matchBy, func(t *testing.T) {
			e := newEnv(t, func(o *sso.Options) { o.MatchBy, o.JITUsers = tc.matchBy, true })
			for _, u := range provisioned {
				e.addUser(u)
			}
			tc.id.Method = "oidc"
			if user, refusal := signInAs(t, e, tc.id); user != tc.id.UserName {
				t.Fatalf("signed in as %q, refused %q; want a new user %q", user, refusal, tc.id.UserName)
			}
			u, err := e.store.GetUserByName(context.Background(), tc.id.UserName)
			if err != nil {
				t.Fatal(err)
			}
			if !u.Active || u.Email != tc.id.Email || u.ExternalID != tc.externalID {
				t.Errorf("created user %+v", u)
			}
			evs := e.events(audit.AdminPrefix + ".user.create")
			if len(evs) != 1 {
				t.Fatalf("%d admin.user.create events, want 1", len(evs))
			}
			if d := detail(t, evs[0]); d["jit"] != true || evs[0].User != tc.id.UserName || evs[0].Actor != "sso:oidc" {
				t.Errorf("admin.user.create event %+v detail %v", evs[0], d)
			}

			// The next sign-in finds the person instead of creating them again.
			if user, refusal := signInAs(t, e, tc.id); user != tc.id.UserName {
				t.Fatalf("second sign-in: %q, refused %q", user, refusal)
			}
			if n := len(e.events(audit.AdminPrefix + ".user.create")); n != 1 {
				t.Errorf("%d admin.user.create events after the second sign-in, want 1", n)
			}
		})
	}
}

func TestJITUsersRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matchBy string
		id      sso.Identity
		refusal string
	}{
		// The name is alice's, the email is not: creating would fail, and
		// signing in as alice would be signing in as someone else.
		{"name taken", config.MatchEmail, sso.Identity{UserName: "alice", Email: "a.impostor@contoso.com"}, "ambiguous_user"},
		{"name not a database role", config.MatchUserName, sso.Identity{UserName: "Mallory Smith"}, "attribute_invalid"},
		{"no email to match", config.MatchEmail, sso.Identity{UserName: "frank"}, "attribute_missing"},
		{"disabled stays disabled", config.MatchUserName, sso.Identity{UserName: "carol"}, "user_disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *sso.Options) { o.MatchBy, o.JITUsers = tc.matchBy, true })
			for _, u := range provisioned {
				e.addUser(u)
			}
			tc.id.Method = "saml"
			if user, refusal := signInAs(t, e, tc.id); refusal != tc.refusal {
				t.Fatalf("signed in as %q, refused %q; want refused %q", user, refusal, tc.refusal)
			}
			if n := len(e.events(audit.AdminPrefix + ".user.create")); n != 0 {
				t.Errorf("%d users created by a refused sign-in", n)
			}
		})
	}
}
