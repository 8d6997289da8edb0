package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/testidp"
	"github.com/keygate/keygate/sso"
)

// callbackURL is keygate's redirect URL as registered at the test
// provider. Nothing listens there: the browser stops at the redirect to it.
const callbackURL = "https://keygate.test" + sso.PathOIDCCallback

const (
	clientID     = "keygate"
	clientSecret = "client-secret"
)

// The people the test provider knows. Ada signs in with a password alone,
// Grace with a password and a one-time code; the UserInfo endpoint answers
// about Ada when asked about Eve. Besides the example provider's claims,
// the ID token carries groups and a project attribute, as an enterprise
// provider's does.
var testUsers = []testidp.OIDCUser{
	{
		ID: "id-ada", UserName: "ada", Password: "correct horse",
		FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", EmailVerified: true,
		Claims:   map[string]any{"groups": []string{"db-admins", "analysts"}, "project": "apollo", "department": map[string]any{"name": "engines"}},
		UserInfo: map[string]any{"project": "from-userinfo", "groups": []string{"from-userinfo"}},
	},
	{
		ID: "id-grace", UserName: "grace", Password: "battery staple",
		FirstName: "Grace", LastName: "Hopper", Email: "grace@example.com", EmailVerified: true,
		Claims: map[string]any{"groups": []string{}, "project": "cobol"},
		MFA:    true,
	},
	{
		ID: "id-eve", UserName: "eve", Password: "hunter2",
		FirstName: "Eve", LastName: "Dropper", Email: "eve@example.com",
		UserInfo: map[string]any{"sub": "id-ada"},
	},
}

// startOP starts zitadel's example provider with client clientID, whose
// redirect URI is callbackURL. Its Client trusts the provider's TLS
// certificate; the provider is reached only through it, as keygate
// reaches a provider through Config.HTTPClient.
func startOP(t *testing.T) *testidp.OIDC {
	t.Helper()
	return testidp.StartOIDC(t, testidp.OIDCOptions{
		Clients: []testidp.OIDCClient{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{callbackURL}}},
		Users:   testUsers,
	})
}

// mapping is what keygate's config gives by default, plus groups and a
// tag.
var mapping = sso.Mapping{
	UserName: "preferred_username",
	Email:    "email",
	Groups:   "groups",
	Tags:     map[string]string{"project": "project"},
}

func newProvider(t *testing.T, p *testidp.OIDC, edit func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		Issuer:       p.Issuer,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  callbackURL,
		Scopes:       []string{"profile", "email"},
		Mapping:      mapping,
		HTTPClient:   p.Client,
	}
	if edit != nil {
		edit(&cfg)
	}
	prov, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return prov
}

// signIn plays the browser: it follows the authorization request to the
// provider's login form, posts the credentials, follows the provider's
// redirects up to keygate's callback, and returns the code and state
// that the callback would receive.
func signIn(t *testing.T, p *testidp.OIDC, authURL, user, password string) (code, state string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.Certificate())
	browser := testidp.NewBrowser(t, roots)
	browser.StopAt = callbackURL
	page := browser.Get(authURL)
	if page.Status != http.StatusOK || page.FormValue("id") == "" {
		t.Fatalf("authorization request: want the login form, got %s", page)
	}
	page = browser.OIDCLogin(page, user, password)
	loc := page.Location()
	if loc == nil || !strings.HasPrefix(loc.String(), callbackURL) {
		t.Fatalf("login: want a redirect to %s, got %s", callbackURL, page)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("provider refused the sign-in: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return q.Get("code"), q.Get("state")
}

// flow is one sign-in's one-time values, as package sso makes them.
type flow struct{ state, nonce, verifier string }

func newFlow() flow {
	return flow{state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
}

// login signs user in at prov and returns the code, after checking that
// the provider echoed the state.
func login(t *testing.T, p *testidp.OIDC, prov *Provider, f flow, user, password string) string {
	t.Helper()
	code, state := signIn(t, p, prov.AuthCodeURL(f.state, f.nonce, f.verifier), user, password)
	if state != f.state {
		t.Fatalf("state: got %q, want %q", state, f.state)
	}
	if code == "" {
		t.Fatal("no code in the redirect to the callback")
	}
	return code
}

func TestSignIn(t *testing.T) {
	p := startOP(t)
	prov := newProvider(t, p, nil)
	tests := []struct {
		user, password string
		want           sso.Identity
	}{
		{"ada", "correct horse", sso.Identity{
			Method: "oidc", Subject: "id-ada", UserName: "ada", Email: "ada@example.com",
			Groups: []string{"db-admins", "analysts"}, Tags: map[string]string{"project": "apollo"},
		}},
		{"grace", "battery staple", sso.Identity{
			Method: "oidc", Subject: "id-grace", UserName: "grace", Email: "grace@example.com",
			Tags: map[string]string{"project": "cobol"}, MFA: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			f := newFlow()
			code := login(t, p, prov, f, tt.user, tt.password)
			before := p.UserInfoCalls()
			id, err := prov.Exchange(context.Background(), code, f.verifier, f.nonce)
			if err != nil {
				t.Fatal(err)
			}
			// Ada's project and groups come from the ID token, which
			// wins over UserInfo.
			assertIdentity(t, id, tt.want)
			// The example provider leaves profile and email out of an ID
			// token issued with an access token, as many real ones do.
			if n := p.UserInfoCalls() - before; n != 1 {
				t.Errorf("UserInfo called %d times, want 1", n)
			}
		})
	}
}

// TestSignInFromIDToken checks that a mapping the ID token satisfies
// costs no UserInfo request.
func TestSignInFromIDToken(t *testing.T) {
	p := startOP(t)
	prov := newProvider(t, p, func(c *Config) {
		c.Mapping = sso.Mapping{Groups: "groups", Tags: map[string]string{"project": "project"}}
	})
	f := newFlow()
	id, err := prov.Exchange(context.Background(), login(t, p, prov, f, "grace", "battery staple"), f.verifier, f.nonce)
	if err != nil {
		t.Fatal(err)
	}
	assertIdentity(t, id, sso.Identity{Method: "oidc", Subject: "id-grace", UserName: "id-grace",
		Tags: map[string]string{"project": "cobol"}, MFA: true})
	if n := p.UserInfoCalls(); n != 0 {
		t.Errorf("UserInfo called %d times, want 0", n)
	}
}

func assertIdentity(t *testing.T, got, want sso.Identity) {
	t.Helper()
	if got.Method != want.Method || got.Subject != want.Subject || got.UserName != want.UserName ||
		got.Email != want.Email || got.MFA != want.MFA || !slices.Equal(got.Groups, want.Groups) ||
		fmt.Sprint(got.Tags) != fmt.Sprint(want.Tags) || !got.NotAfter.IsZero() {
		t.Errorf("identity:\n got %+v\nwant %+v", got, want)
	}
}

func TestRefusals(t *testing.T) {
	p := startOP(t)
	tests := []struct {
		name string
		edit func(*Config)
		// exchange redeems code for flow f, returning what keygate's
		// callback would get.
		exchange func(prov *Provider, code string, f flow) (sso.Identity, error)
		// user signs in; default ada.
		user, password string
		code           string
	}{
		{
			name: "nonce of another sign-in",
			exchange: func(prov *Provider, code string, f flow) (sso.Identity, error) {
				return prov.Exchange(context.Background(), code, f.verifier, newFlow().nonce)
			},
			code: "nonce_mismatch",
		},
		{
			name: "no nonce",
			exchange: func(prov *Provider, code string, f flow) (sso.Identity, error) {
				return prov.Exchange(context.Background(), code, f.verifier, "")
			},
			code: "nonce_mismatch",
		},
		{
			name: "code used twice",
			exchange: func(prov *Provider, code string, f flow) (sso.Identity, error) {
				if _, err := prov.Exchange(context.Background(), code, f.verifier, f.nonce); err != nil {
					return sso.Identity{}, fmt.Errorf("first use: %w", err)
				}
				return prov.Exchange(context.Background(), code, f.verifier, f.nonce)
			},
			code: "provider_error",
		},
		{
			name: "PKCE verifier of another sign-in",
			exchange: func(prov *Provider, code string, f flow) (sso.Identity, error) {
				return prov.Exchange(context.Background(), code, newFlow().verifier, f.nonce)
			},
			code: "provider_error",
		},
		{
			name: "unknown code",
			exchange: func(prov *Provider, code string, f flow) (sso.Identity, error) {
				return prov.Exchange(context.Background(), "not-"+code, f.verifier, f.nonce)
			},
			code: "provider_error",
		},
		{
			name: "ID token expired",
			edit: func(c *Config) {
				c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
				c.ClockSkew = 2 * time.Minute
			},
			code: "id_token_invalid",
		},
		{
			name: "ID token issued in the future",
			edit: func(c *Config) {
				c.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
				c.ClockSkew = 2 * time.Minute
			},
			code: "id_token_invalid",
		},
		{
			name: "UserInfo about someone else",
			user: "eve", password: "hunter2",
			code: "userinfo_mismatch",
		},
		{
			name: "mapped user name missing",
			edit: func(c *Config) { c.Mapping.UserName = "employee_id" },
			code: "attribute_missing",
		},
		{
			name: "tag with several values",
			edit: func(c *Config) { c.Mapping.Tags = map[string]string{"team": "groups"} },
			code: "attribute_invalid",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prov := newProvider(t, p, tt.edit)
			f := newFlow()
			user, password := tt.user, tt.password
			if user == "" {
				user, password = "ada", "correct horse"
			}
			code := login(t, p, prov, f, user, password)
			exchange := tt.exchange
			if exchange == nil {
				exchange = func(prov *Provider, code string, f flow) (sso.Identity, error) {
					return prov.Exchange(context.Background(), code, f.verifier, f.nonce)
				}
			}
			id, err := exchange(prov, code, f)
			var ref *sso.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("want a refusal %q, got identity %+v, error %v", tt.code, id, err)
			}
			if ref.Code != tt.code {
				t.Fatalf("refusal code %q, want %q: %v", ref.Code, tt.code, err)
			}
			if ref.Reason == "" || strings.Contains(ref.Reason, code) {
				t.Errorf("reason %q is empty or shows the code", ref.Reason)
			}
		})
	}
}

// TestClockSkew checks that the skew allows a provider clock that is
// behind or ahead of keygate's.
func TestClockSkew(t *testing.T) {
	p := startOP(t)
	// The example provider's ID tokens live one hour.
	for _, offset := range []time.Duration{time.Hour + 30*time.Second, -30 * time.Second} {
		t.Run(offset.String(), func(t *testing.T) {
			prov := newProvider(t, p, func(c *Config) {
				c.Now = func() time.Time { return time.Now().Add(offset) }
				c.ClockSkew = time.Minute
			})
			f := newFlow()
			if _, err := prov.Exchange(context.Background(), login(t, p, prov, f, "ada", "correct horse"), f.verifier, f.nonce); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAuthCodeURL(t *testing.T) {
	p := startOP(t)
	prov := newProvider(t, p, func(c *Config) { c.Scopes = []string{"email", "openid", "email", " profile "} })
	f := newFlow()
	u, err := url.Parse(prov.AuthCodeURL(f.state, f.nonce, f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(f.verifier))
	want := map[string]string{
		"response_type":         "code",
		"client_id":             clientID,
		"redirect_uri":          callbackURL,
		"scope":                 "openid email profile",
		"state":                 f.state,
		"nonce":                 f.nonce,
		"code_challenge_method": "S256",
		"code_challenge":        base64.RawURLEncoding.EncodeToString(sum[:]),
	}
	q := u.Query()
	for k, v := range want {
		if got := q.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if q.Has("code_verifier") || strings.Contains(u.String(), f.verifier) {
		t.Error("the authorization request shows the PKCE verifier")
	}
}

func TestNewDiscoveryErrors(t *testing.T) {
	p := startOP(t)
	empty := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(empty.Close)
	tests := []struct {
		name, issuer string
		client       *http.Client
		want         []string
	}{
		{"no discovery document", empty.URL, nil, []string{empty.URL + "/.well-known/openid-configuration", "404", "issuer URL"}},
		{"issuer spelled differently", p.Issuer + "/", p.Client, []string{p.Issuer + "/", fmt.Sprintf("%q", p.Issuer), "trailing slash"}},
		{"certificate not trusted", p.Issuer, nil, []string{p.Issuer + "/.well-known/openid-configuration", "certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Issuer: tt.issuer, ClientID: clientID, RedirectURL: callbackURL, HTTPClient: tt.client})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFlatten(t *testing.T) {
	got, err := flatten([]byte(`{
		"sub": "u1", "exp": 1700000000, "ratio": 0.5, "email_verified": true,
		"groups": ["a", "b"], "mixed": ["x", 7, false, {"k": "v"}, null, ["y"]],
		"none": [], "address": {"country": "NZ"}, "nothing": null
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := sso.Claims{
		"sub": {"u1"}, "exp": {"1700000000"}, "ratio": {"0.5"}, "email_verified": {"true"},
		"groups": {"a", "b"}, "mixed": {"x", "7", "false"}, "none": {},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Errorf("flatten:\n got %v\nwant %v", got, want)
	}
	if _, ok := got["none"]; !ok {
		t.Error("an empty list must stay present: it says there are none")
	}
}
