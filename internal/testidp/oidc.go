package testidp

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// OIDCUser is someone the OpenID provider signs in, with what an
// enterprise provider adds to the example's users: claims of its own and a
// second factor.
type OIDCUser struct {
	// ID is the subject.
	ID       string
	UserName string
	Password string
	// FirstName and LastName make up the name claims.
	FirstName, LastName string
	Email               string
	EmailVerified       bool
	// Claims are added to the ID token, such as groups or a project.
	Claims map[string]any
	// UserInfo are added to UserInfo answers. A "sub" among them replaces
	// the subject, as a provider confused about whose token it was asked
	// about would.
	UserInfo map[string]any
	// MFA makes the sign-in one with a password and a one-time code: amr
	// ["pwd", "otp"].
	MFA bool
}

// OIDCClient is a relying party registered at the provider.
type OIDCClient struct {
	ID, Secret   string
	RedirectURIs []string
}

// OIDCOptions configure an OpenID provider.
type OIDCOptions struct {
	Clients []OIDCClient
	Users   []OIDCUser
}

// OIDC is zitadel's example OpenID provider, serving over HTTPS
// in-process. Its login step is the example's form at /login/username.
type OIDC struct {
	// Issuer is the provider's issuer URL.
	Issuer string
	// Client reaches the provider, trusting its certificate.
	Client *http.Client

	srv           *httptest.Server
	userInfoCalls atomic.Int32

	mu    sync.Mutex
	users map[string]OIDCUser // by ID
}

// StartOIDC starts an OpenID provider that stops when the test ends.
func StartOIDC(t testing.TB, o OIDCOptions) *OIDC {
	t.Helper()
	p := NewOIDC(o)
	t.Cleanup(p.Close)
	return p
}

// NewOIDC starts an OpenID provider; Close stops it. The clients are
// fixed at start, so start it once the redirect URIs are known.
func NewOIDC(o OIDCOptions) *OIDC {
	srv := httptest.NewUnstartedServer(nil)
	p := &OIDC{Issuer: "https://" + srv.Listener.Addr().String(), srv: srv, users: map[string]OIDCUser{}}
	for _, u := range o.Users {
		p.users[u.ID] = u
	}
	clients := map[string]*storage.Client{}
	for _, c := range o.Clients {
		clients[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
	}
	stor := &oidcStorage{Storage: storage.NewStorageWithClients(oidcUsers{p}, clients), p: p}
	router := exampleop.SetupServer(p.Issuer, stor, nil, false)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/userinfo" {
			p.userInfoCalls.Add(1)
		}
		router.ServeHTTP(w, r)
	})
	srv.StartTLS()
	p.Client = srv.Client()
	return p
}

// Close stops the provider.
func (p *OIDC) Close() { p.srv.Close() }

// Certificate is the provider's TLS certificate, for a client to trust.
func (p *OIDC) Certificate() *x509.Certificate { return p.srv.Certificate() }

// UserInfoCalls counts requests to the UserInfo endpoint.
func (p *OIDC) UserInfoCalls() int { return int(p.userInfoCalls.Load()) }

// AddUser adds a user, or replaces the one with the same ID.
func (p *OIDC) AddUser(u OIDCUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.ID] = u
}

func (p *OIDC) user(id string) (OIDCUser, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[id]
	return u, ok
}

// oidcUsers serves the users to the example storage.
type oidcUsers struct{ p *OIDC }

func (s oidcUsers) GetUserByID(id string) *storage.User {
	u, ok := s.p.user(id)
	if !ok {
		return nil
	}
	return u.example()
}

func (s oidcUsers) GetUserByUsername(name string) *storage.User {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	for _, u := range s.p.users {
		if u.UserName == name {
			return u.example()
		}
	}
	return nil
}

func (oidcUsers) ExampleClientID() string { return storage.ServiceUserID }

func (u OIDCUser) example() *storage.User {
	return &storage.User{ID: u.ID, Username: u.UserName, Password: u.Password, FirstName: u.FirstName, LastName: u.LastName,
		Email: u.Email, EmailVerified: u.EmailVerified, PreferredLanguage: language.English}
}

// oidcStorage is the example's in-memory storage with the users' own
// claims and second factors.
type oidcStorage struct {
	*storage.Storage
	p *OIDC
}

func (s *oidcStorage) SetUserinfoFromRequest(ctx context.Context, info *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	u, _ := s.p.user(req.GetSubject())
	for name, v := range u.Claims {
		info.AppendClaims(name, v)
	}
	return nil
}

func (s *oidcStorage) SetUserinfoFromToken(ctx context.Context, info *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	u, _ := s.p.user(info.Subject)
	for name, v := range u.UserInfo {
		if name == "sub" {
			info.Subject = v.(string)
		} else {
			info.AppendClaims(name, v)
		}
	}
	return nil
}

func (s *oidcStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	r, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return r, err
	}
	if u, _ := s.p.user(r.GetSubject()); !u.MFA {
		return r, nil
	}
	return mfaRequest{r.(*storage.AuthRequest)}, nil
}

// CreateAccessToken hands the example storage the request type it knows.
func (s *oidcStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	if m, ok := req.(mfaRequest); ok {
		req = m.AuthRequest
	}
	return s.Storage.CreateAccessToken(ctx, req)
}

// mfaRequest is a sign-in that used a password and a one-time code.
type mfaRequest struct{ *storage.AuthRequest }

func (mfaRequest) GetAMR() []string { return []string{"pwd", "otp"} }
