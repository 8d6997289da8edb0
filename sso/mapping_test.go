package sso_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/sso"
)

const (
	azureEmail = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
	tagPrefix  = sso.PrincipalTagPrefix
)

func TestMappingIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mapping sso.Mapping
		subject string
		claims  sso.Claims
		want    sso.Identity // Method and Subject are filled in
		refusal string
	}{
		{name: "subject as user name", subject: " alice@contoso.com ",
			want: sso.Identity{UserName: "alice@contoso.com"}},
		{name: "user name attribute, any case", mapping: sso.Mapping{UserName: "preferred_username"}, subject: "248289761001",
			claims: sso.Claims{"Preferred_Username": {" alice ", "ignored"}},
			want:   sso.Identity{UserName: "alice"}},
		{name: "user name attribute missing", mapping: sso.Mapping{UserName: "preferred_username"}, subject: "248289761001",
			refusal: "attribute_missing"},
		{name: "user name attribute blank", mapping: sso.Mapping{UserName: "preferred_username"}, subject: "248289761001",
			claims: sso.Claims{"preferred_username": {"  "}}, refusal: "attribute_missing"},
		{name: "no subject", subject: " ", refusal: "attribute_missing"},

		{name: "email from the named attribute", mapping: sso.Mapping{Email: "upn"}, subject: "alice",
			claims: sso.Claims{"upn": {"alice@contoso.com"}, "email": {"other@contoso.com"}},
			want:   sso.Identity{UserName: "alice", Email: "alice@contoso.com"}},
		{name: "named email attribute missing", mapping: sso.Mapping{Email: "upn"}, subject: "alice",
			claims: sso.Claims{"email": {"other@contoso.com"}},
			want:   sso.Identity{UserName: "alice"}},
		{name: "default email: Azure's claim first", subject: "alice",
			claims: sso.Claims{"mail": {"c@contoso.com"}, "email": {"b@contoso.com"}, azureEmail: {"a@contoso.com"}},
			want:   sso.Identity{UserName: "alice", Email: "a@contoso.com"}},
		{name: "default email: email before mail", subject: "alice",
			claims: sso.Claims{"mail": {"c@contoso.com"}, "email": {"b@contoso.com"}},
			want:   sso.Identity{UserName: "alice", Email: "b@contoso.com"}},
		{name: "default email: LDAP OID", subject: "alice",
			claims: sso.Claims{"urn:oid:0.9.2342.19200300.100.1.3": {"d@contoso.com"}},
			want:   sso.Identity{UserName: "alice", Email: "d@contoso.com"}},

		{name: "groups trimmed and once each", mapping: sso.Mapping{Groups: "groups"}, subject: "alice",
			claims: sso.Claims{"groups": {"analysts", " analysts ", "", "oncall", "analysts"}},
			want:   sso.Identity{UserName: "alice", Groups: []string{"analysts", "oncall"}}},
		{name: "groups only when mapped", subject: "alice",
			claims: sso.Claims{"groups": {"analysts"}},
			want:   sso.Identity{UserName: "alice"}},

		{name: "principal tags as AWS reads them", subject: "alice",
			claims: sso.Claims{tagPrefix + "project": {" alpha "}, strings.ToLower(tagPrefix) + "environment": {"prod"}},
			want:   sso.Identity{UserName: "alice", Tags: map[string]string{"project": "alpha", "environment": "prod"}}},
		{name: "mapped tags win over prefixed ones", mapping: sso.Mapping{Tags: map[string]string{"project": "proj", "team": "absent"}}, subject: "alice",
			claims: sso.Claims{tagPrefix + "project": {"alpha"}, "proj": {"beta"}},
			want:   sso.Identity{UserName: "alice", Tags: map[string]string{"project": "beta"}}},
		{name: "principal tag with two values", subject: "alice",
			claims: sso.Claims{tagPrefix + "project": {"alpha", "beta"}}, refusal: "attribute_invalid"},
		{name: "principal tag with no values", subject: "alice",
			claims: sso.Claims{tagPrefix + "project": {}}, refusal: "attribute_invalid"},
		{name: "principal tag without a key", subject: "alice",
			claims: sso.Claims{tagPrefix + " ": {"alpha"}}, refusal: "attribute_invalid"},
		{name: "mapped tag with two values", mapping: sso.Mapping{Tags: map[string]string{"team": "groups"}}, subject: "alice",
			claims: sso.Claims{"groups": {"a", "b"}}, refusal: "attribute_invalid"},

		{name: "amr mfa", subject: "alice", claims: sso.Claims{"amr": {"pwd", "mfa"}},
			want: sso.Identity{UserName: "alice", MFA: true}},
		{name: "amr password only", subject: "alice", claims: sso.Claims{"amr": {"pwd"}},
			want: sso.Identity{UserName: "alice"}},
		{name: "Azure's authentication methods", subject: "alice",
			claims: sso.Claims{sso.ClaimAzureMethods: {"http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password", "http://schemas.microsoft.com/claims/multipleauthn"}},
			want:   sso.Identity{UserName: "alice", MFA: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.mapping.Identity("saml", tc.subject, tc.claims)
			if tc.refusal != "" {
				var r *sso.Refusal
				if !errors.As(err, &r) || r.Code != tc.refusal || r.Reason == "" {
					t.Fatalf("err = %v, want a refusal %q", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.Method, want.Subject = "saml", tc.subject
			if want.Tags == nil {
				want.Tags = map[string]string{}
			}
			if got.Method != want.Method || got.Subject != want.Subject || got.UserName != want.UserName || got.Email != want.Email ||
				got.MFA != want.MFA || !slices.Equal(got.Groups, want.Groups) || !maps.Equal(got.Tags, want.Tags) || !got.NotAfter.IsZero() {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestMethodsShowMFA(t *testing.T) {
	for _, tc := range []struct {
		methods []string
		want    bool
	}{
		{nil, false},
		{[]string{"pwd"}, false},
		{[]string{"pwd", "kba", "sms"}, false},
		{[]string{"pwd", "otp"}, true},
		{[]string{" HWK "}, true},
		{[]string{"multipleauthn"}, true},
		{[]string{"mfax"}, false},
	} {
		if got := sso.MethodsShowMFA(tc.methods); got != tc.want {
			t.Errorf("MethodsShowMFA(%q) = %v, want %v", tc.methods, got, tc.want)
		}
	}
}

// FuzzMappingIdentity maps claims as an identity provider may send them:
// the result is either a refusal the person can be shown, or an identity
// whose user name, groups and tags are all usable.
func FuzzMappingIdentity(f *testing.F) {
	f.Add("alice", "", "groups", "analysts", tagPrefix+"project", "alpha")
	f.Add(" ", "uid", "uid", " bob ", "amr", "mfa")
	f.Add("carol", "", "GROUPS", "", tagPrefix, "x")
	f.Add("\x00", "mail", "Mail", "\xff", strings.ToUpper(tagPrefix)+" k ", " v ")
	f.Fuzz(func(t *testing.T, subject, userAttr, name1, value1, name2, value2 string) {
		m := sso.Mapping{UserName: userAttr, Groups: "groups", Tags: map[string]string{"team": name2}}
		claims := sso.Claims{name1: {value1, value2}, name2: {value2}}
		id, err := m.Identity("oidc", subject, claims)
		if err != nil {
			var r *sso.Refusal
			if !errors.As(err, &r) || (r.Code != "attribute_missing" && r.Code != "attribute_invalid") || r.Reason == "" {
				t.Fatalf("error %v is not a refusal to show", err)
			}
			return
		}
		if id.UserName == "" || id.UserName != strings.TrimSpace(id.UserName) {
			t.Fatalf("user name %q", id.UserName)
		}
		for i, g := range id.Groups {
			if g == "" || g != strings.TrimSpace(g) || slices.Contains(id.Groups[:i], g) {
				t.Fatalf("groups %q", id.Groups)
			}
		}
		for k, v := range id.Tags {
			if k == "" || k != strings.TrimSpace(k) || v != strings.TrimSpace(v) {
				t.Fatalf("tags %q", id.Tags)
			}
		}
	})
}
