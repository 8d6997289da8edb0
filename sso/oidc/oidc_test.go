package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
	"golang.org/x/text/language"

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
// about Ada when asked about Eve.
var testUsers = map[string]*storage.User{
	"id-ada": {
		ID: "id-ada", Username: "ada", Password: "correct horse",
		FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", EmailVerified: true,
		PreferredLanguage: language.English,
	},
	"id-grace": {
		ID: "id-grace", Username: "grace", Password: "battery staple",
		FirstName: "Grace", LastName: "Hopper", Email: "grace@example.com", EmailVerified: true,
		PreferredLanguage: language.English,
	},
	"id-eve": {
		ID: "id-eve", Username: "eve", Password: "hunter2",
		FirstName: "Eve", LastName: "Dropper", Email: "eve@example.com",
		PreferredLanguage: language.English,
	},
}

// userStore serves testUsers to the example provider.
type userStore struct{}

func (userStore) GetUserByID(id string) *storage.User { return testUsers[id] }

func (userStore) GetUserByUsername(name string) *storage.User {
	for _, u := range testUsers {
		if u.Username == name {
			return u
		}
	}
	return nil
}

func (userStore) ExampleClientID() string { return storage.ServiceUserID }

// testStorage is the example provider's in-memory storage with what an
// enterprise identity provider adds: claims of its own in the ID token
// (groups, a project attribute) and a second factor for some people.
type testStorage struct {
	*storage.Storage
	// claims are added to the ID token, by user ID.
	claims map[string]map[string]any
	// userInfo are added to UserInfo answers, by user ID; a "sub" among
	// them replaces the subject.
	userInfo map[string]map[string]any
	// mfa holds the user IDs that sign in with a second factor.
	mfa map[string]bool
}

func (s *testStorage) SetUserinfoFromRequest(ctx context.Context, info *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	for name, v := range s.claims[req.GetSubject()] {
		info.AppendClaims(name, v)
	}
	return nil
}

func (s *testStorage) SetUserinfoFromToken(ctx context.Context, info *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	for name, v := range s.userInfo[info.Subject] {
		if name == "sub" {
			info.Subject = v.(string)
		} else {
			info.AppendClaims(name, v)
		}
	}
	return nil
}

func (s *testStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	r, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil || !s.mfa[r.GetSubject()] {
		return r, err
	}
	return mfaRequest{r.(*storage.AuthRequest)}, nil
}

// CreateAccessToken hands the example storage the request type it knows.
func (s *testStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	if m, ok := req.(mfaRequest); ok {
		req = m.AuthRequest
	}
	return s.Storage.CreateAccessToken(ctx, req)
}

// mfaRequest is a sign-in that used a password and a one-time code.
type mfaRequest struct{ *storage.AuthRequest }

func (mfaRequest) GetAMR() []string { return []string{"pwd", "otp"} }

// testOP is zitadel's example OpenID provider, running in-process.
type testOP struct {
	issuer string
	// client trusts the provider's TLS certificate; the provider is
	// reached only through it, as keygate reaches a provider through
	// Config.HTTPClient.
	client        *http.Client
	userInfoCalls atomic.Int32
}

// startOP starts a provider with client clientID, whose redirect URI is
// callbackURL.
func startOP(t *testing.T) *testOP {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	p := &testOP{issuer: "https://" + srv.Listener.Addr().String()}
	stor := &testStorage{
		Storage: storage.NewStorageWithClients(userStore{}, map[string]*storage.Client{
			clientID: storage.WebClient(clientID, clientSecret, callbackURL),
		}),
		claims: map[string]map[string]any{
			"id-ada":   {"groups": []string{"db-admins", "analysts"}, "project": "apollo", "department": map[string]any{"name": "engines"}},
			"id-grace": {"groups": []string{}, "project": "cobol"},
		},
		userInfo: map[string]map[string]any{
			"id-ada": {"project": "from-userinfo", "groups": []string{"from-userinfo"}},
			"id-eve": {"sub": "id-ada"},
		},
		mfa: map[string]bool{"id-grace": true},
	}
	router := exampleop.SetupServer(p.issuer, stor, nil, false)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/userinfo" {
			p.userInfoCalls.Add(1)
		}
		router.ServeHTTP(w, r)
	})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.client = srv.Client()
	return p
}

// mapping is what keygate's config gives by default, plus groups and a
// tag.
var mapping = sso.Mapping{
	UserName: "preferred_username",
	Email:    "email",
	Groups:   "groups",
	Tags:     map[string]string{"project": "project"},
}

func newProvider(t *testing.T, p *testOP, edit func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		Issuer:       p.issuer,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  callbackURL,
		Scopes:       []string{"profile", "email"},
		Mapping:      mapping,
		HTTPClient:   p.client,
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

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formID     = regexp.MustCompile(`<input[^>]*name="id"[^>]*value="([^"]*)"`)
)

// signIn plays the browser: it follows the authorization request to the
// provider's login form, posts the credentials, follows the provider's
// redirects up to keygate's callback, and returns the code and state
// that the callback would receive.
func signIn(t *testing.T, p *testOP, authURL, user, password string) (code, state string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Transport: p.client.Transport, Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), callbackURL) {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}}
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(t, resp)
	action, id := formAction.FindStringSubmatch(page), formID.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || action == nil || id == nil {
		t.Fatalf("authorization request: want the login form, got %s at %s:\n%s", resp.Status, resp.Request.URL, page)
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(action[1]))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = browser.PostForm(target.String(), url.Values{
		"id":       {html.UnescapeString(id[1])},
		"username": {user},
		"password": {password},
	})
	if err != nil {
		t.Fatal(err)
	}
	page = readBody(t, resp)
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), callbackURL) {
		t.Fatalf("login: want a redirect to %s, got %s:\n%s", callbackURL, resp.Status, page)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("provider refused the sign-in: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return q.Get("code"), q.Get("state")
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// flow is one sign-in's one-time values, as package sso makes them.
type flow struct{ state, nonce, verifier string }

func newFlow() flow {
	return flow{state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
}

// login signs user in at prov and returns the code, after checking that
// the provider echoed the state.
func login(t *testing.T, p *testOP, prov *Provider, f flow, user, password string) string {
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
			before := p.userInfoCalls.Load()
			id, err := prov.Exchange(context.Background(), code, f.verifier, f.nonce)
			if err != nil {
				t.Fatal(err)
			}
			// Ada's project and groups come from the ID token, which
			// wins over UserInfo.
			assertIdentity(t, id, tt.want)
			// The example provider leaves profile and email out of an ID
			// token issued with an access token, as many real ones do.
			if n := p.userInfoCalls.Load() - before; n != 1 {
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
	if n := p.userInfoCalls.Load(); n != 0 {
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
		{"issuer spelled differently", p.issuer + "/", p.client, []string{p.issuer + "/", fmt.Sprintf("%q", p.issuer), "trailing slash"}},
		{"certificate not trusted", p.issuer, nil, []string{p.issuer + "/.well-known/openid-configuration", "certificate"}},
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
