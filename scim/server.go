// Package scim is keygate's SCIM 2.0 service provider (RFC 7643, RFC 7644):
// identity providers such as Azure AD (Entra ID) and Okta push people and
// groups into keygate's store through it, with a bearer token an admin made
// with `keygate admin scim-token create`.
//
// The handlers are keygate's own, because client quirks matter: Azure AD's
// capitalised PATCH ops and "False" strings, Okta's path-less deactivation,
// AWS IAM Identity Center-style cursor paging. Filter and path parsing is
// scim2/filter-parser's; evaluation is here, driven by the schemas.
//
// Every change goes through the store, so the gateway's revocation path
// sees it: a person deactivated or removed from a group loses their live
// sessions within a second of the response.
package scim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/guesslimit"
	"github.com/keygate/keygate/store"
)

// Store is what the SCIM endpoint reads and writes.
type Store interface {
	CreateUser(ctx context.Context, u identity.User) (identity.User, error)
	GetUser(ctx context.Context, id string) (identity.User, error)
	GetUserByName(ctx context.Context, name string) (identity.User, error)
	ListUsers(ctx context.Context, q store.UserQuery) ([]identity.User, error)
	UpdateUser(ctx context.Context, id string, fn func(identity.User) (identity.User, error)) (identity.User, error)
	DeleteUser(ctx context.Context, id string) error

	CreateGroup(ctx context.Context, g identity.Group) (identity.Group, error)
	GetGroup(ctx context.Context, id string) (identity.Group, error)
	GetGroupByName(ctx context.Context, name string) (identity.Group, error)
	ListGroups(ctx context.Context) ([]identity.Group, error)
	UpdateGroup(ctx context.Context, id, source string, fn func(identity.Group) (identity.Group, store.MemberChange, error)) (identity.Group, error)
	DeleteGroup(ctx context.Context, id string) error
	ListMembers(ctx context.Context, groupID string) ([]identity.Member, error)
	GroupsOf(ctx context.Context, userID string) ([]identity.Group, error)
	ListSessions(ctx context.Context, userName string) ([]identity.Session, error)

	GetProvisioningTokenByHash(ctx context.Context, secretHash []byte) (identity.ProvisioningToken, error)
	TouchProvisioningToken(ctx context.Context, id string, at time.Time) error
}

// Auditor records audit events.
type Auditor interface {
	Record(e audit.Event)
}

// Server serves /scim/v2.
type Server struct {
	store   Store
	audit   Auditor
	log     *slog.Logger
	now     func() time.Time
	limiter *guesslimit.Limiter
	// touched remembers when each token's last use was stored, so that
	// provisioning ten thousand people does not write ten thousand times.
	touched sync.Map

	// PublicURL is the API's base URL as SCIM clients reach it, such as
	// https://keygate.example.com behind a reverse proxy; resource
	// locations start with it. Empty means https:// and the host the
	// request named, which a proxy may have rewritten.
	PublicURL string
}

// Prefix is where the endpoint lives on the API listener. It is matched
// exactly, as the Tenant URL that `keygate admin scim-token create` prints
// spells it: clients append endpoint names to that URL as given, and a
// reverse proxy routing this path would not match another spelling either.
// What follows it is matched as other SCIM servers do (canonicalPath).
const Prefix = "/scim/v2"

// endpoints are the names under Prefix, spelled as RFC 7644 spells them
// and as the routes and resource locations use them.
var endpoints = []string{"Users", "Groups", "ServiceProviderConfig", "Schemas", "ResourceTypes"}

// Limits.
const (
	maxBody         = 1 << 20
	defaultPageSize = 100
	maxPageSize     = 1000
	// Failed authentications: 10 at once, then one every 6 s, per source.
	failBurst    = 10
	failInterval = 6 * time.Second
)

// New makes a SCIM server. now is the clock; nil means time.Now.
func New(st Store, a Auditor, log *slog.Logger, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{store: st, audit: a, log: log, now: now, limiter: guesslimit.New(failBurst, failInterval)}
}

// Handler serves everything under Prefix, with endpoint names in any case
// and with or without a trailing slash (canonicalPaths).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Discovery is public: it describes the service, nothing in it.
	mux.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", s.serve(s.serviceProviderConfig))
	mux.HandleFunc("GET "+Prefix+"/Schemas", s.serve(s.schemas))
	mux.HandleFunc("GET "+Prefix+"/Schemas/{id}", s.serve(s.schema))
	mux.HandleFunc("GET "+Prefix+"/ResourceTypes", s.serve(s.resourceTypes))
	mux.HandleFunc("GET "+Prefix+"/ResourceTypes/{id}", s.serve(s.resourceType))

	mux.HandleFunc("GET "+Prefix+"/Users", s.authed(s.listUsers))
	mux.HandleFunc("POST "+Prefix+"/Users", s.authed(s.createUser))
	mux.HandleFunc("GET "+Prefix+"/Users/{id}", s.authed(s.getUser))
	mux.HandleFunc("PUT "+Prefix+"/Users/{id}", s.authed(s.replaceUser))
	mux.HandleFunc("PATCH "+Prefix+"/Users/{id}", s.authed(s.patchUser))
	mux.HandleFunc("DELETE "+Prefix+"/Users/{id}", s.authed(s.deleteUser))

	mux.HandleFunc("GET "+Prefix+"/Groups", s.authed(s.listGroups))
	mux.HandleFunc("POST "+Prefix+"/Groups", s.authed(s.createGroup))
	mux.HandleFunc("GET "+Prefix+"/Groups/{id}", s.authed(s.getGroup))
	mux.HandleFunc("PUT "+Prefix+"/Groups/{id}", s.authed(s.replaceGroup))
	mux.HandleFunc("PATCH "+Prefix+"/Groups/{id}", s.authed(s.patchGroup))
	mux.HandleFunc("DELETE "+Prefix+"/Groups/{id}", s.authed(s.deleteGroup))

	mux.HandleFunc(Prefix+"/", s.serve(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("no SCIM endpoint at %s: use %s/Users or %s/Groups", r.URL.Path, Prefix, Prefix)
	}))
	return canonicalPaths(mux)
}

// canonicalPaths hands next each request with its path spelled as the
// routes spell it (canonicalPath). Microsoft's reference SCIM server
// matches paths in any case and with a trailing slash, and clients written
// against it send /scim/v2/users or /scim/v2/Users/?filter=…
func canonicalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		escaped := r.URL.EscapedPath()
		c := canonicalPath(escaped)
		path, err := url.PathUnescape(c)
		if c == escaped || err != nil {
			next.ServeHTTP(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.URL = new(url.URL)
		*r2.URL = *r.URL
		r2.URL.Path, r2.URL.RawPath = path, c
		next.ServeHTTP(w, r2)
	})
}

// canonicalPath spells an escaped request path under Prefix as the routes
// do: the endpoint name in its RFC 7644 case, and without one trailing
// slash. A resource id keeps its exact spelling, since ids are opaque and
// case matters in them. Paths of other shapes are left as they are, and
// find no route.
func canonicalPath(escaped string) string {
	rest, ok := strings.CutPrefix(escaped, Prefix+"/")
	if !ok {
		return escaped
	}
	name, id, hasID := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	i := slices.IndexFunc(endpoints, func(e string) bool { return strings.EqualFold(name, e) })
	if i < 0 || hasID && (id == "" || strings.Contains(id, "/")) {
		return escaped
	}
	if !hasID {
		return Prefix + "/" + endpoints[i]
	}
	return Prefix + "/" + endpoints[i] + "/" + id
}

// request carries what a handler needs besides the HTTP request.
type request struct {
	*http.Request
	token identity.ProvisioningToken
	// apiURL is the API's base URL as the client sees it.
	apiURL string
}

// source is how the history and the audit name the token's changes.
func (r *request) source() string { return "scim:" + r.token.Name }

// base is the endpoint's URL, which resource locations start with.
func (r *request) base() string {
	return r.apiURL + Prefix
}

// apiURL is the API's base URL as the client sees it: PublicURL when it
// is set, else from the request's host.
func (s *Server) apiURL(r *http.Request) string {
	if s.PublicURL != "" {
		return s.PublicURL
	}
	return "https://" + r.Host
}

func (r *request) client() string { return r.RemoteAddr }

type handler func(w http.ResponseWriter, r *http.Request) error

// serve runs h, writing its error as a SCIM error response. Errors that are
// not SCIM errors are logged and shown as a generic 500.
func (s *Server) serve(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		err := h(w, r)
		if err == nil {
			return
		}
		var se *Error
		if !errors.As(err, &se) {
			s.log.Error("scim request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			se = errorf(http.StatusInternalServerError, "", "internal error; the keygate server log has details")
		}
		writeJSON(w, se.Status, se.body())
	}
}

// authed guards a resource endpoint with a provisioning token.
func (s *Server) authed(h func(w http.ResponseWriter, r *request) error) http.HandlerFunc {
	return s.serve(func(w http.ResponseWriter, r *http.Request) error {
		now := s.now()
		src := guesslimit.Source(r)
		if ok, wait := s.limiter.Allowed(src, now); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			return errorf(http.StatusTooManyRequests, "", "too many failed authentications from %s: wait %s", src, wait.Round(time.Second))
		}
		tok, reason := s.authenticate(r, now)
		if reason != "" {
			s.limiter.Failed(src, now)
			s.audit.Record(audit.Event{Type: "scim.auth.refused", Client: r.RemoteAddr, Reason: reason})
			s.log.Info("scim authentication refused", "client", r.RemoteAddr, "reason", reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="keygate", error="invalid_token"`)
			return errorf(http.StatusUnauthorized, "", "%s", reason)
		}
		s.touch(r.Context(), tok, now)
		return h(w, &request{Request: r, token: tok, apiURL: s.apiURL(r)})
	})
}

// authenticate checks the bearer token; a non-empty reason refuses it. The
// lookup is by SHA-256 of the presented secret, so no secret is compared
// byte by byte.
func (s *Server) authenticate(r *http.Request, now time.Time) (identity.ProvisioningToken, string) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return identity.ProvisioningToken{}, "no bearer token: set the Secret Token from `keygate admin scim-token create`"
	}
	sum := credential.Hash(strings.TrimSpace(h[7:]))
	tok, err := s.store.GetProvisioningTokenByHash(r.Context(), sum[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tok, "unknown token"
	case err != nil:
		s.log.Error("look up provisioning token", "err", err)
		return tok, "keygate could not check the token"
	case !tok.Revoked.IsZero():
		return tok, fmt.Sprintf("token %s was revoked", tok.Name)
	case !tok.ValidAt(now):
		return tok, fmt.Sprintf("token %s expired on %s", tok.Name, tok.Expires.Format(time.DateOnly))
	}
	return tok, ""
}

func (s *Server) touch(ctx context.Context, tok identity.ProvisioningToken, now time.Time) {
	if last, ok := s.touched.Load(tok.ID); ok && now.Sub(last.(time.Time)) < time.Minute {
		return
	}
	s.touched.Store(tok.ID, now)
	if err := s.store.TouchProvisioningToken(ctx, tok.ID, now); err != nil {
		s.log.Warn("could not record provisioning token use", "token", tok.Name, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeResource writes one resource with its ETag.
func writeResource(w http.ResponseWriter, status int, d doc) error {
	if m, ok := d["meta"].(map[string]any); ok {
		if v, ok := m["version"].(string); ok {
			w.Header().Set("ETag", v)
		}
		if status == http.StatusCreated {
			if loc, ok := m["location"].(string); ok {
				w.Header().Set("Location", loc)
			}
		}
	}
	return writeJSON(w, status, d)
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "", "the body is larger than %d bytes", maxBody)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, invalidSyntax, "cannot read the body: %v", err)
	}
	return b, nil
}

// checkIfMatch honours If-Match against the resource's current version.
func checkIfMatch(r *http.Request, version int64) error {
	want := r.Header.Get("If-Match")
	if want == "" || want == "*" {
		return nil
	}
	have := etag(version)
	for _, tag := range strings.Split(want, ",") {
		tag = strings.TrimSpace(tag)
		if tag == have || "W/"+tag == have {
			return nil
		}
	}
	return errorf(http.StatusPreconditionFailed, "", "the resource is at version %s, not %s: read it again", have, want)
}

// listQuery holds the parameters of a list request.
type listQuery struct {
	filter     filter.Expression
	startIndex int
	count      int
	cursor     *string // RFC 9865 cursor paging, when asked for
	attributes []string
	excluded   []string
}

func parseListQuery(r *http.Request) (listQuery, error) {
	v := r.URL.Query()
	q := listQuery{startIndex: 1, count: defaultPageSize}
	if f := v.Get("filter"); f != "" {
		e, err := parseFilter(f)
		if err != nil {
			return q, err
		}
		q.filter = e
	}
	if s := v.Get("startIndex"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, badValue("startIndex must be a number, not %q", s)
		}
		q.startIndex = max(n, 1)
	}
	if s := v.Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, badValue("count must be a number, not %q", s)
		}
		q.count = min(max(n, 0), maxPageSize)
	}
	if v.Has("cursor") {
		c := v.Get("cursor")
		q.cursor = &c
	}
	q.attributes = splitList(v.Get("attributes"))
	q.excluded = splitList(v.Get("excludedAttributes"))
	return q, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// wants reports whether the projection keeps attribute name.
func (q listQuery) wants(name string) bool {
	for _, x := range q.excluded {
		if strings.EqualFold(x, name) {
			return false
		}
	}
	if len(q.attributes) == 0 {
		return true
	}
	for _, a := range q.attributes {
		base, _, _ := strings.Cut(a, ".")
		if strings.EqualFold(base, name) || strings.EqualFold(a, SchemaUser+":"+name) || strings.EqualFold(a, SchemaGroup+":"+name) {
			return true
		}
	}
	return false
}

// entry is a resource that matched, in listing order. Without a filter
// nothing needs rendering to match, so doc is made only for the page.
type entry struct {
	created time.Time
	id      string
	doc     doc
	render  func() (doc, error)
}

// listResponse pages entries, already in (created, id) order.
func listResponse(rt *resourceType, q listQuery, entries []entry) (map[string]any, error) {
	resp := map[string]any{"schemas": []string{messageList}, "totalResults": len(entries)}
	var page []entry
	if q.cursor != nil {
		start := 0
		if *q.cursor != "" {
			created, id, err := decodeCursor(*q.cursor)
			if err != nil {
				return nil, err
			}
			for start < len(entries) && !after(entries[start], created, id) {
				start++
			}
		}
		end := min(start+q.count, len(entries))
		page = entries[start:end]
		if end < len(entries) && len(page) > 0 {
			last := page[len(page)-1]
			resp["nextCursor"] = encodeCursor(last.created, last.id)
		}
	} else {
		start := min(q.startIndex-1, len(entries))
		end := min(start+q.count, len(entries))
		page = entries[start:end]
		resp["startIndex"] = q.startIndex
	}
	resources := make([]doc, 0, len(page))
	for _, e := range page {
		d := e.doc
		if d == nil {
			var err error
			if d, err = e.render(); err != nil {
				return nil, err
			}
		}
		resources = append(resources, project(rt, d, q.attributes, q.excluded))
	}
	resp["itemsPerPage"] = len(resources)
	resp["Resources"] = resources
	return resp, nil
}

func after(e entry, created time.Time, id string) bool {
	if c := e.created.Compare(created); c != 0 {
		return c > 0
	}
	return e.id > id
}

func encodeCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixNano(), 10) + "." + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		ns, id, ok := strings.Cut(string(raw), ".")
		if n, perr := strconv.ParseInt(ns, 10, 64); ok && perr == nil {
			return time.Unix(0, n), id, nil
		}
	}
	return time.Time{}, "", errorf(http.StatusBadRequest, "invalidCursor", "cursor %q is not one keygate handed out", c)
}

func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{schemaServiceProviderConfig},
		"documentationUri": s.apiURL(r) + "/",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": maxPageSize},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"pagination": map[string]any{
			"cursor": true, "index": true, "defaultPaginationMethod": "index",
			"defaultPageSize": defaultPageSize, "maxPageSize": maxPageSize, "cursorTimeout": 3600,
		},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "A token from `keygate admin scim-token create`, sent as Authorization: Bearer <token>",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": s.apiURL(r) + Prefix + "/ServiceProviderConfig"},
	})
}

// schemaResource describes sc; apiURL is the API's base URL as the client
// sees it.
func schemaResource(sc *schema, apiURL string) map[string]any {
	attrs := sc.Attributes
	return map[string]any{
		"schemas": []string{schemaSchema}, "id": sc.ID, "name": sc.Name, "description": sc.Description, "attributes": attrs,
		"meta": map[string]any{"resourceType": "Schema", "location": apiURL + Prefix + "/Schemas/" + sc.ID},
	}
}

var allSchemas = []*schema{userSchema, enterpriseSchema, keygateSchema, groupSchema}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request) error {
	var list []any
	for _, sc := range allSchemas {
		list = append(list, schemaResource(sc, s.apiURL(r)))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{messageList}, "totalResults": len(list), "itemsPerPage": len(list), "startIndex": 1, "Resources": list})
}

func (s *Server) schema(w http.ResponseWriter, r *http.Request) error {
	for _, sc := range allSchemas {
		if strings.EqualFold(sc.ID, r.PathValue("id")) {
			return writeJSON(w, http.StatusOK, schemaResource(sc, s.apiURL(r)))
		}
	}
	return notFound("no schema %q", r.PathValue("id"))
}

// resourceTypeResource describes rt; apiURL is the API's base URL as the
// client sees it.
func resourceTypeResource(rt *resourceType, apiURL string) map[string]any {
	var exts []any
	for _, e := range rt.extensions {
		exts = append(exts, map[string]any{"schema": e.ID, "required": false})
	}
	out := map[string]any{
		"schemas": []string{schemaResourceType}, "id": rt.Name, "name": rt.Name, "endpoint": rt.Endpoint, "schema": rt.core.ID,
		"meta": map[string]any{"resourceType": "ResourceType", "location": apiURL + Prefix + "/ResourceTypes/" + rt.Name},
	}
	if exts != nil {
		out["schemaExtensions"] = exts
	}
	return out
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request) error {
	list := []any{resourceTypeResource(userType, s.apiURL(r)), resourceTypeResource(groupType, s.apiURL(r))}
	return writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{messageList}, "totalResults": len(list), "itemsPerPage": len(list), "startIndex": 1, "Resources": list})
}

func (s *Server) resourceType(w http.ResponseWriter, r *http.Request) error {
	for _, rt := range []*resourceType{userType, groupType} {
		if strings.EqualFold(rt.Name, r.PathValue("id")) {
			return writeJSON(w, http.StatusOK, resourceTypeResource(rt, s.apiURL(r)))
		}
	}
	return notFound("no resource type %q", r.PathValue("id"))
}
