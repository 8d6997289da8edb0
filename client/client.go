// Package client is the CLI's side of keygate: it finds the server, trusts
// keygate's CA, and calls the API with a session or admin credential.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
)

// Client calls one keygate server.
type Client struct {
	base   *url.URL
	http   *http.Client
	bearer string
	// caFile is the CA bundle trusted, for advice when the server's
	// certificate does not verify; empty means the system's roots.
	caFile string
}

// New makes a client for server (https://host:port), trusting the CA bundle
// in caFile (system roots when empty), authenticating with bearer.
func New(server, caFile, bearer string) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server %q: use https://HOST:PORT, as in listen.api of the server's config", server)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w (get it with `keygate ca --config FILE` or from %s/v1/ca.pem)", err, server)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &Client{
		base:   u,
		bearer: bearer,
		caFile: caFile,
		http:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}},
	}, nil
}

// Server is the API URL the client calls, for messages that name it.
func (c *Client) Server() string { return strings.TrimSuffix(c.base.String(), "/") }

// Error is an API error response.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsStatus reports whether err is an API error with the given status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read response from %s: %w", c.base, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode response from %s: %w", c.base, err)
	}
	return nil
}

// send makes a request and returns the response of a 2xx status, whose
// body the caller closes; any other status is an *Error.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	// path is already escaped segment by segment.
	target := strings.TrimSuffix(c.base.String(), "/") + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read response from %s: %w", c.base, err)
	}
	var e api.Error
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	return nil, &Error{Status: resp.StatusCode, Message: e.Error}
}

// Token asks for a database token; access "" means the least privilege held.
func (c *Client) Token(ctx context.Context, database, access string) (api.TokenResponse, error) {
	var out api.TokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, api.TokenRequest{Database: database, Access: access}, &out)
	return out, err
}

// CreateGroup creates a group.
func (c *Client) CreateGroup(ctx context.Context, name string) (api.Group, error) {
	var out api.Group
	err := c.do(ctx, http.MethodPost, "/v1/admin/groups", nil, api.GroupRequest{Name: name}, &out)
	return out, err
}

// AddMember adds user to group.
func (c *Client) AddMember(ctx context.Context, group, user string) (api.Group, error) {
	var out api.Group
	err := c.do(ctx, http.MethodPut, "/v1/admin/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(user), nil, nil, &out)
	return out, err
}

// RemoveMember removes user from group.
func (c *Client) RemoveMember(ctx context.Context, group, user string) (api.Group, error) {
	var out api.Group
	err := c.do(ctx, http.MethodDelete, "/v1/admin/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(user), nil, nil, &out)
	return out, err
}

// CreateUser creates a user in groups, creating missing groups.
func (c *Client) CreateUser(ctx context.Context, req api.UserRequest) (api.User, error) {
	var out api.User
	err := c.do(ctx, http.MethodPost, "/v1/admin/users", nil, req, &out)
	return out, err
}

// CreateSession creates a sign-in session for user.
func (c *Client) CreateSession(ctx context.Context, user, ttl string) (api.SessionResponse, error) {
	var out api.SessionResponse
	err := c.do(ctx, http.MethodPost, "/v1/admin/sessions", nil, api.SessionRequest{User: user, TTL: ttl}, &out)
	return out, err
}

// VerifyAudit checks the audit log's hash chain on the server.
func (c *Client) VerifyAudit(ctx context.Context) (api.AuditVerification, error) {
	var out api.AuditVerification
	err := c.do(ctx, http.MethodGet, "/v1/admin/audit/verify", nil, nil, &out)
	return out, err
}

// ExportAudit writes the whole audit log, as keygate audit verify
// --export reads it, to w.
func (c *Client) ExportAudit(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/v1/admin/audit/export", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read the export from %s: %w", c.base, err)
	}
	if resp.Trailer.Get(api.ExportCompleteTrailer) != "true" {
		return fmt.Errorf("the export from %s ended early: %s", c.base, resp.Trailer.Get(api.ExportErrorTrailer))
	}
	return nil
}

// CreateProvisioningToken makes a SCIM bearer token; ttl "" means it never
// expires.
func (c *Client) CreateProvisioningToken(ctx context.Context, name, ttl string) (api.ProvisioningToken, error) {
	var out api.ProvisioningToken
	err := c.do(ctx, http.MethodPost, "/v1/admin/scim-tokens", nil, api.ProvisioningTokenRequest{Name: name, TTL: ttl}, &out)
	return out, err
}

// ListProvisioningTokens lists SCIM bearer tokens, revoked ones included.
func (c *Client) ListProvisioningTokens(ctx context.Context) ([]api.ProvisioningToken, error) {
	var out []api.ProvisioningToken
	err := c.do(ctx, http.MethodGet, "/v1/admin/scim-tokens", nil, nil, &out)
	return out, err
}

// RevokeProvisioningToken revokes the active SCIM token named name.
func (c *Client) RevokeProvisioningToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admin/scim-tokens/"+url.PathEscape(name), nil, nil, nil)
}

// GroupHistory lists a group's memberships, or its members at a moment
// when at is not zero.
func (c *Client) GroupHistory(ctx context.Context, group string, at time.Time) (api.GroupHistory, error) {
	var q url.Values
	if !at.IsZero() {
		q = url.Values{"at": {at.UTC().Format(time.RFC3339Nano)}}
	}
	var out api.GroupHistory
	err := c.do(ctx, http.MethodGet, "/v1/admin/groups/"+url.PathEscape(group)+"/history", q, nil, &out)
	return out, err
}

// WhoAmI describes the caller's session and the person behind it.
func (c *Client) WhoAmI(ctx context.Context) (api.WhoAmI, error) {
	var out api.WhoAmI
	err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
	return out, err
}

// Logout revokes the caller's session.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/logout", nil, nil, nil)
}

// ListSessions lists sign-in sessions: of user when not empty, and the
// ended ones too when all is set.
func (c *Client) ListSessions(ctx context.Context, user string, all bool) ([]api.Session, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "true")
	}
	var out []api.Session
	err := c.do(ctx, http.MethodGet, "/v1/admin/sessions", q, nil, &out)
	return out, err
}

// RevokeSession revokes the sign-in session id.
func (c *Client) RevokeSession(ctx context.Context, id string) (api.Session, error) {
	var out api.Session
	err := c.do(ctx, http.MethodDelete, "/v1/admin/sessions/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// MySessions lists the caller's own sign-in sessions in force (the one
// it calls with marked Current) and their live gateway sessions.
func (c *Client) MySessions(ctx context.Context) (api.MySessions, error) {
	var out api.MySessions
	err := c.do(ctx, http.MethodGet, "/v1/sessions", nil, nil, &out)
	return out, err
}

// EndSession revokes one of the caller's own sign-in sessions: its tokens
// stop working and its gateway sessions end. Another person's session is
// answered 404, as one that does not exist.
func (c *Client) EndSession(ctx context.Context, id string) (api.Session, error) {
	var out api.Session
	err := c.do(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// EndLive ends one of the caller's own live gateway sessions and its
// upstream backend. Another person's is answered 404.
func (c *Client) EndLive(ctx context.Context, id string) (api.LiveSession, error) {
	var out api.LiveSession
	err := c.do(ctx, http.MethodDelete, "/v1/live/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// ListLive lists everyone's live gateway sessions, oldest first: of user
// and on database when not empty. For administrators.
func (c *Client) ListLive(ctx context.Context, user, database string) ([]api.LiveSession, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if database != "" {
		q.Set("database", database)
	}
	var out []api.LiveSession
	err := c.do(ctx, http.MethodGet, "/v1/admin/live", q, nil, &out)
	return out, err
}

// EndLiveAdmin ends anyone's live gateway session and its upstream
// backend, as an administrator: the person's client is told who ended it.
func (c *Client) EndLiveAdmin(ctx context.Context, id string) (api.LiveSession, error) {
	var out api.LiveSession
	err := c.do(ctx, http.MethodDelete, "/v1/admin/live/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// AccessRules fetches the access rules in force: permission sets,
// assignments (the group naming rule's included) and deny rules. For
// administrators.
func (c *Client) AccessRules(ctx context.Context) (api.AccessRules, error) {
	var out api.AccessRules
	err := c.do(ctx, http.MethodGet, "/v1/admin/access/rules", nil, nil, &out)
	return out, err
}

// Reload makes the server read its config again and apply its access
// rules.
func (c *Client) Reload(ctx context.Context) (api.ReloadResult, error) {
	var out api.ReloadResult
	err := c.do(ctx, http.MethodPost, "/v1/admin/reload", nil, nil, &out)
	return out, err
}

// ExplainAccess says whether user may reach database, and why: at level
// access, or at every level when access is empty; mfa assumes a sign-in
// with MFA.
func (c *Client) ExplainAccess(ctx context.Context, user, database, access string, mfa bool) (api.Explanation, error) {
	q := url.Values{"user": {user}, "db": {database}}
	if access != "" {
		q.Set("access", access)
	}
	if mfa {
		q.Set("mfa", "true")
	}
	var out api.Explanation
	err := c.do(ctx, http.MethodGet, "/v1/admin/access/explain", q, nil, &out)
	return out, err
}

// WhoCan asks who could reach database at the moment at (now when zero),
// and who connected between since and until (when zero, the day before
// that moment).
func (c *Client) WhoCan(ctx context.Context, database string, at, since, until time.Time) (api.WhoAnswer, error) {
	q := url.Values{"db": {database}}
	for k, t := range map[string]time.Time{"at": at, "since": since, "until": until} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	var out api.WhoAnswer
	err := c.do(ctx, http.MethodGet, "/v1/admin/access/who", q, nil, &out)
	return out, err
}

// Review fetches the grant matrix: everyone who could reach each database
// now, and at which level.
func (c *Client) Review(ctx context.Context) ([]api.Holder, error) {
	var out []api.Holder
	err := c.do(ctx, http.MethodGet, "/v1/admin/access/review", nil, nil, &out)
	return out, err
}

// AccessFindings lists the groups the group naming rule cannot use.
func (c *Client) AccessFindings(ctx context.Context) (api.AccessFindings, error) {
	var out api.AccessFindings
	err := c.do(ctx, http.MethodGet, "/v1/admin/access/findings", nil, nil, &out)
	return out, err
}

// Report fetches the seeds' measures; since is a duration ago (24h, 7d)
// or an RFC 3339 time, and empty means the server's default, a day.
func (c *Client) Report(ctx context.Context, since string) (api.Report, error) {
	var q url.Values
	if since != "" {
		q = url.Values{"since": {since}}
	}
	var out api.Report
	err := c.do(ctx, http.MethodGet, "/v1/admin/report", q, nil, &out)
	return out, err
}
