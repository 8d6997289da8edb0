package scim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// These check who may provision: bearer tokens, their expiry and
// revocation, the audit of refusals, the limit on guessing, and the
// public discovery endpoints and content types.

// newToken stores a provisioning token and returns its secret.
func (e *env) newToken(t *testing.T, tok identity.ProvisioningToken) string {
	t.Helper()
	secret := credential.New(credential.ProvisioningPrefix)
	h := credential.Hash(secret)
	if _, err := e.store.CreateProvisioningToken(context.Background(), tok, h[:]); err != nil {
		t.Fatal(err)
	}
	return secret
}

// eventText is every field of an audit event, to search for secrets.
func eventText(ev store.AuditEvent) string {
	return strings.Join([]string{ev.Type, ev.Actor, ev.User, ev.Database, ev.Access, ev.Client, ev.SessionID, ev.Query, ev.Reason, string(ev.Detail)}, "\n")
}

// A missing, malformed, unknown, expired or revoked token gets 401 with a
// WWW-Authenticate challenge and a SCIM error, and an audited
// scim.auth.refused event that says why and never holds the secret.
func TestAuthRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	expired := e.newToken(t, identity.ProvisioningToken{Name: "old-idp", Expires: e.now.Add(-time.Minute)})
	expiresNow := e.newToken(t, identity.ProvisioningToken{Name: "edge-idp", Expires: e.now})
	revoked := e.newToken(t, identity.ProvisioningToken{Name: "okta"})
	if err := e.store.RevokeProvisioningToken(ctx, "okta", e.now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	unknown := credential.New(credential.ProvisioningPrefix)
	for _, tc := range []struct {
		name    string
		token   string
		headers []string
		secret  string // what must not be recorded
		reason  string
	}{
		{name: "no Authorization", reason: "no bearer token"},
		{name: "basic auth", headers: []string{"Authorization", "Basic " + "YWRtaW46aHVudGVyMg=="}, secret: "YWRtaW46aHVudGVyMg==", reason: "no bearer token"},
		{name: "token without scheme", headers: []string{"Authorization", e.token}, secret: e.token, reason: "no bearer token"},
		{name: "unknown token", token: unknown, secret: unknown, reason: "unknown token"},
		{name: "token with a character changed", token: e.token[:len(e.token)-1] + "!", secret: e.token[:len(e.token)-1], reason: "unknown token"},
		{name: "expired token", token: expired, secret: expired, reason: "token old-idp expired on 2026-06-01"},
		{name: "token expiring this instant", token: expiresNow, secret: expiresNow, reason: "token edge-idp expired"},
		{name: "revoked token", token: revoked, secret: revoked, reason: "token okta was revoked"},
	} {
		before := len(e.events(t, "scim"))
		r := e.doAs(tc.token, "GET", "/Users", nil, tc.headers...)
		if r.status != http.StatusUnauthorized || !isSCIMError(r, http.StatusUnauthorized) {
			t.Errorf("%s: %d %s, want a 401 SCIM error", tc.name, r.status, r.raw)
			continue
		}
		if c := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer ") || !strings.Contains(c, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, c)
		}
		if !strings.Contains(r.str("detail"), tc.reason) || r.body["Resources"] != nil {
			t.Errorf("%s: body %s, want a detail saying %q", tc.name, r.raw, tc.reason)
		}
		evs := e.events(t, "scim")
		if len(evs) != before+1 {
			t.Errorf("%s: %d new audit events, want 1", tc.name, len(evs)-before)
			continue
		}
		ev := evs[len(evs)-1]
		if ev.Type != "scim.auth.refused" || !strings.Contains(ev.Reason, tc.reason) || !strings.HasPrefix(ev.Client, "127.0.0.1:") {
			t.Errorf("%s: audit event %+v, want scim.auth.refused from 127.0.0.1 saying %q", tc.name, ev, tc.reason)
		}
		if tc.secret != "" && (strings.Contains(eventText(ev), tc.secret) || strings.Contains(r.raw, tc.secret)) {
			t.Errorf("%s: the secret is in the audit event or the answer: %q / %s", tc.name, eventText(ev), r.raw)
		}
	}
	// None of the refused requests reached a handler.
	for _, ev := range e.events(t, "scim") {
		if ev.Type != "scim.auth.refused" {
			t.Errorf("refused requests left a %s event", ev.Type)
		}
	}
	for _, tok := range mustTokens(t, e) {
		if tok.Name != "azure-ad" && !tok.LastUsed.IsZero() {
			t.Errorf("refused token %s was marked used at %v", tok.Name, tok.LastUsed)
		}
	}

	// A token valid for an hour works, and is refused once the hour is up.
	soon := e.newToken(t, identity.ProvisioningToken{Name: "short", Expires: e.now.Add(time.Hour)})
	e.doAs(soon, "GET", "/Users", nil).want(t, http.StatusOK)
	e.now = e.now.Add(time.Hour)
	if r := e.doAs(soon, "GET", "/Users", nil).want(t, http.StatusUnauthorized); !strings.Contains(r.str("detail"), "token short expired") {
		t.Errorf("after expiry: %s", r.raw)
	}
	// The scheme is case-insensitive (RFC 7235), and the good token works.
	e.doAs("", "GET", "/Users", nil, "Authorization", "bearer "+e.token).want(t, http.StatusOK)
	for _, tok := range mustTokens(t, e) {
		if tok.Name == "azure-ad" && !tok.LastUsed.Equal(e.now) {
			t.Errorf("good token last used %v, want %v", tok.LastUsed, e.now)
		}
	}
}

func mustTokens(t *testing.T, e *env) []identity.ProvisioningToken {
	t.Helper()
	toks, err := e.store.ListProvisioningTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// Every resource endpoint needs the token; discovery does not.
func TestAuthEveryEndpoint(t *testing.T) {
	e := newEnv(t)
	id := e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "kept@example.com"}).want(t, http.StatusCreated).str("id")
	gid := e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "kept"}).want(t, http.StatusCreated).str("id")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/Users", ""},
		{"GET", "/Users?filter=" + q(`userName eq "kept@example.com"`), ""},
		{"POST", "/Users", `{"userName": "new@example.com"}`},
		{"GET", "/Users/" + id, ""},
		{"PUT", "/Users/" + id, `{"userName": "changed@example.com"}`},
		{"PATCH", "/Users/" + id, patchBody(`{"op": "replace", "path": "active", "value": false}`)},
		{"DELETE", "/Users/" + id, ""},
		{"GET", "/Groups", ""},
		{"POST", "/Groups", `{"displayName": "new"}`},
		{"GET", "/Groups/" + gid, ""},
		{"PUT", "/Groups/" + gid, `{"displayName": "changed"}`},
		{"PATCH", "/Groups/" + gid, patchBody(`{"op": "replace", "path": "displayName", "value": "changed"}`)},
		{"DELETE", "/Groups/" + gid, ""},
	} {
		// Let the failure limit recover between requests.
		e.now = e.now.Add(time.Minute)
		r := e.doAs("", c.method, c.path, c.body)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" || !isSCIMError(r, http.StatusUnauthorized) {
			t.Errorf("%s %s without a token: %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	// Nothing changed.
	if r := e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK); r.str("userName") != "kept@example.com" || r.body["active"] != true {
		t.Errorf("user after unauthenticated writes: %s", r.raw)
	}
	if r := e.do("GET", "/Groups/"+gid, nil).want(t, http.StatusOK); r.str("displayName") != "kept" {
		t.Errorf("group after unauthenticated writes: %s", r.raw)
	}
	for _, p := range []string{"/ServiceProviderConfig", "/Schemas", "/Schemas/" + SchemaUser, "/ResourceTypes", "/ResourceTypes/User"} {
		e.doAs("", "GET", p, nil).want(t, http.StatusOK)
	}
}

// doFrom sends a request from the local address ip, so that the server
// sees another source.
func (e *env) doFrom(t *testing.T, ip, token, method, path string) (int, map[string]any) {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, e.srv.URL+Prefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Skipf("cannot send from %s: %v", ip, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

// After failBurst failed authentications a source is refused with 429,
// even with a good token, until one attempt per failInterval has been
// earned back; other sources are not affected.
func TestAuthFailureLimit(t *testing.T) {
	e := newEnv(t)
	wrong := credential.New(credential.ProvisioningPrefix)
	for i := range failBurst {
		if r := e.doAs(wrong, "GET", "/Users", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, r.status)
		}
	}
	// limited checks for a 429 whose Retry-After covers wait, the time
	// until the next attempt is allowed, rounded up by at most a second.
	limited := func(token string, wait time.Duration) {
		t.Helper()
		r := e.doAs(token, "GET", "/Users", nil).want(t, http.StatusTooManyRequests)
		if !isSCIMError(r, http.StatusTooManyRequests) || !strings.Contains(r.str("detail"), "too many failed authentications from 127.0.0.1") {
			t.Fatalf("429 body: %s", r.raw)
		}
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if secs := int(wait / time.Second); err != nil || n < secs || n > secs+1 {
			t.Fatalf("Retry-After %q, want %v", r.header.Get("Retry-After"), wait)
		}
	}
	limited(wrong, failInterval)
	// A correct token from a limited source is refused too: it is not
	// even looked at, so guessing cannot go on.
	limited(e.token, failInterval)
	e.now = e.now.Add(failInterval - time.Second)
	limited(e.token, time.Second)

	// Throttled requests are not audited one by one.
	if n := len(e.events(t, "scim.auth.refused")); n != failBurst {
		t.Errorf("%d scim.auth.refused events, want %d", n, failBurst)
	}

	// Another source is not limited.
	if status, _ := e.doFrom(t, "127.0.0.2", e.token, "GET", "/Users"); status != http.StatusOK {
		t.Errorf("good token from another source: %d", status)
	}
	if status, _ := e.doFrom(t, "127.0.0.2", wrong, "GET", "/Users"); status != http.StatusUnauthorized {
		t.Errorf("wrong token from another source: %d, want 401", status)
	}
	evs := e.events(t, "scim.auth.refused")
	if last := evs[len(evs)-1]; !strings.HasPrefix(last.Client, "127.0.0.2:") {
		t.Errorf("refusal from 127.0.0.2 recorded with client %q", last.Client)
	}

	// Discovery stays public while the source is limited.
	e.do("GET", "/ServiceProviderConfig", nil).want(t, http.StatusOK)

	// One interval on, one attempt is allowed: good requests do not use
	// it up, a failure does.
	e.now = e.now.Add(time.Second)
	e.do("GET", "/Users", nil).want(t, http.StatusOK)
	e.do("GET", "/Users", nil).want(t, http.StatusOK)
	e.doAs(wrong, "GET", "/Users", nil).want(t, http.StatusUnauthorized)
	limited(e.token, failInterval)

	// After burst intervals the whole burst is back, and no more.
	e.now = e.now.Add(time.Duration(failBurst+5) * failInterval)
	for i := range failBurst {
		if r := e.doAs(wrong, "GET", "/Users", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("after recovery, failure %d: %d, want 401", i+1, r.status)
		}
	}
	limited(e.token, failInterval)
}

// Requests may be sent as application/json or application/scim+json;
// every answer with a body is application/scim+json.
func TestContentTypes(t *testing.T) {
	e := newEnv(t)
	for _, ct := range []string{"application/json", "application/scim+json", "application/scim+json; charset=utf-8", "application/json; charset=UTF-8"} {
		name := strings.NewReplacer("/", "-", ";", "", " ", "", "=", "-").Replace(ct) + "@example.com"
		r := e.do("POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "`+name+`"}`, "Content-Type", ct).want(t, http.StatusCreated)
		id := r.str("id")
		e.do("PUT", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "`+name+`", "displayName": "x"}`, "Content-Type", ct).want(t, http.StatusOK)
		e.do("PATCH", "/Users/"+id, patchBody(`{"op": "replace", "path": "displayName", "value": "y"}`), "Content-Type", ct).want(t, http.StatusOK)
		if got := e.do("GET", "/Users/"+id, nil).str("displayName"); got != "y" {
			t.Errorf("%s: displayName %q after PATCH", ct, got)
		}
	}
	gid := e.do("POST", "/Groups", `{"displayName": "g"}`, "Content-Type", "application/json").want(t, http.StatusCreated).str("id")
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/Users", "", 200},
		{"GET", "/Users?filter=" + q(`userName pr`), "", 200},
		{"GET", "/Groups/" + gid, "", 200},
		{"PATCH", "/Groups/" + gid, patchBody(`{"op": "replace", "path": "displayName", "value": "h"}`), 200},
		{"POST", "/Users", `{"userName": "ct@example.com"}`, 201},
		{"POST", "/Users", `{"userName": "ct@example.com"}`, 409},
		{"POST", "/Users", `{`, 400},
		{"GET", "/Users?filter=" + q(`bogus pr`), "", 400},
		{"GET", "/Users/nope", "", 404},
		{"GET", "/Nope", "", 404},
		{"GET", "/ServiceProviderConfig", "", 200},
		{"GET", "/Schemas", "", 200},
		{"GET", "/ResourceTypes/Group", "", 200},
	} {
		r := e.do(c.method, c.path, c.body)
		if r.status != c.status || r.header.Get("Content-Type") != "application/scim+json" || r.body == nil {
			t.Errorf("%s %s: %d %q, want %d application/scim+json: %s", c.method, c.path, r.status, r.header.Get("Content-Type"), c.status, r.raw)
		}
	}
	r := e.doAs("", "GET", "/Users", nil)
	if r.status != 401 || r.header.Get("Content-Type") != "application/scim+json" {
		t.Errorf("401: %q", r.header.Get("Content-Type"))
	}
}

// ServiceProviderConfig says what is supported, truthfully.
func TestServiceProviderConfig(t *testing.T) {
	e := newEnv(t)
	r := e.doAs("", "GET", "/ServiceProviderConfig", nil).want(t, http.StatusOK)
	for path, want := range map[string]any{
		"schemas":                         []any{schemaServiceProviderConfig},
		"patch.supported":                 true,
		"filter.supported":                true,
		"filter.maxResults":               float64(maxPageSize),
		"etag.supported":                  true,
		"bulk.supported":                  false,
		"sort.supported":                  false,
		"changePassword.supported":        false,
		"pagination.index":                true,
		"pagination.cursor":               true,
		"pagination.defaultPageSize":      float64(defaultPageSize),
		"pagination.maxPageSize":          float64(maxPageSize),
		"meta.resourceType":               "ServiceProviderConfig",
		"authenticationSchemes.#":         float64(1),
		"authenticationSchemes.0.type":    "oauthbearertoken",
		"authenticationSchemes.0.primary": true,
	} {
		if got := lookupPath(r.body, path); jsonText(got) != jsonText(want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if loc := r.str("meta.location"); !strings.HasSuffix(loc, Prefix+"/ServiceProviderConfig") {
		t.Errorf("meta.location %q", loc)
	}
}

// lookupPath reads a dotted path out of a decoded JSON document: numbers
// index lists and "#" is a list's length.
func lookupPath(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			if p == "#" {
				v = float64(len(x))
				continue
			}
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// Schemas lists the four schemas the server implements, each readable on
// its own, and every attribute it lists is one filters accept.
func TestSchemas(t *testing.T) {
	e := newEnv(t)
	r := e.doAs("", "GET", "/Schemas", nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(4) || len(r.resources()) != 4 {
		t.Fatalf("Schemas: %s", r.raw)
	}
	var ids []string
	byID := map[string]map[string]any{}
	for _, s := range r.resources() {
		id := s["id"].(string)
		ids = append(ids, id)
		byID[id] = s
		if attrs, _ := s["attributes"].([]any); len(attrs) == 0 {
			t.Errorf("schema %s has no attributes", id)
		}
		if lookupPath(s, "meta.resourceType") != "Schema" || !strings.HasSuffix(fmt.Sprint(lookupPath(s, "meta.location")), "/Schemas/"+id) {
			t.Errorf("schema %s meta: %v", id, s["meta"])
		}
		one := e.doAs("", "GET", "/Schemas/"+id, nil).want(t, http.StatusOK)
		if jsonText(one.body) != jsonText(s) {
			t.Errorf("/Schemas/%s differs from its entry in /Schemas", id)
		}
	}
	want := []string{SchemaUser, SchemaEnterprise, SchemaKeygate, SchemaGroup}
	if !slices.Equal(ids, want) {
		t.Fatalf("schemas %v, want %v", ids, want)
	}
	e.doAs("", "GET", "/Schemas/urn:example:nope", nil).want(t, http.StatusNotFound)

	attr := func(schemaID, name string) map[string]any {
		for _, a := range byID[schemaID]["attributes"].([]any) {
			if m := a.(map[string]any); m["name"] == name {
				return m
			}
		}
		t.Fatalf("%s has no attribute %s", schemaID, name)
		return nil
	}
	for _, c := range []struct {
		schema, attr, field string
		want                any
	}{
		{SchemaUser, "userName", "required", true},
		{SchemaUser, "userName", "uniqueness", "server"},
		{SchemaUser, "userName", "caseExact", false},
		{SchemaUser, "password", "mutability", "writeOnly"},
		{SchemaUser, "password", "returned", "never"},
		{SchemaUser, "groups", "mutability", "readOnly"},
		{SchemaUser, "emails", "multiValued", true},
		{SchemaUser, "active", "type", "boolean"},
		{SchemaEnterprise, "department", "type", "string"},
		{SchemaEnterprise, "manager", "type", "complex"},
		{SchemaKeygate, "tags", "multiValued", true},
		{SchemaGroup, "displayName", "uniqueness", "server"},
		{SchemaGroup, "members", "multiValued", true},
	} {
		if got := attr(c.schema, c.attr)[c.field]; got != c.want {
			t.Errorf("%s %s.%s = %v, want %v", c.schema, c.attr, c.field, got, c.want)
		}
	}

	// What /Schemas lists, filters accept.
	var filters []string
	for _, sc := range []struct{ id, endpoint string }{{SchemaUser, "/Users"}, {SchemaEnterprise, "/Users"}, {SchemaKeygate, "/Users"}, {SchemaGroup, "/Groups"}} {
		prefix := ""
		if sc.id == SchemaEnterprise || sc.id == SchemaKeygate {
			prefix = sc.id + ":"
		}
		for _, a := range byID[sc.id]["attributes"].([]any) {
			m := a.(map[string]any)
			subs, _ := m["subAttributes"].([]any)
			if len(subs) == 0 {
				filters = append(filters, sc.endpoint+" "+prefix+m["name"].(string)+" pr")
			}
			for _, s := range subs {
				filters = append(filters, sc.endpoint+" "+prefix+m["name"].(string)+"."+s.(map[string]any)["name"].(string)+" pr")
			}
		}
	}
	for _, f := range filters {
		endpoint, filter, _ := strings.Cut(f, " ")
		if r := e.do("GET", endpoint+"?filter="+q(filter), nil); r.status != http.StatusOK {
			t.Errorf("%s ?filter=%s: %d %s", endpoint, filter, r.status, r.raw)
		}
	}
}

// ResourceTypes lists User, with the enterprise and keygate extensions,
// and Group.
func TestResourceTypes(t *testing.T) {
	e := newEnv(t)
	r := e.doAs("", "GET", "/ResourceTypes", nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(2) || len(r.resources()) != 2 {
		t.Fatalf("ResourceTypes: %s", r.raw)
	}
	user, group := r.resources()[0], r.resources()[1]
	if user["name"] != "User" || user["endpoint"] != "/Users" || user["schema"] != SchemaUser {
		t.Errorf("User resource type: %v", user)
	}
	if got := jsonText(user["schemaExtensions"]); got != jsonText([]any{
		map[string]any{"schema": SchemaEnterprise, "required": false},
		map[string]any{"schema": SchemaKeygate, "required": false},
	}) {
		t.Errorf("User schemaExtensions: %s", got)
	}
	if group["name"] != "Group" || group["endpoint"] != "/Groups" || group["schema"] != SchemaGroup || group["schemaExtensions"] != nil {
		t.Errorf("Group resource type: %v", group)
	}
	for _, rt := range r.resources() {
		if schemas, _ := rt["schemas"].([]any); len(schemas) != 1 || schemas[0] != schemaResourceType {
			t.Errorf("%v: schemas %v", rt["name"], rt["schemas"])
		}
		if !strings.HasSuffix(fmt.Sprint(lookupPath(rt, "meta.location")), "/ResourceTypes/"+rt["name"].(string)) {
			t.Errorf("%v: meta %v", rt["name"], rt["meta"])
		}
	}
	for _, name := range []string{"User", "user", "Group"} {
		one := e.doAs("", "GET", "/ResourceTypes/"+name, nil).want(t, http.StatusOK)
		if !strings.EqualFold(one.str("name"), name) {
			t.Errorf("/ResourceTypes/%s: %s", name, one.raw)
		}
	}
	e.doAs("", "GET", "/ResourceTypes/Device", nil).want(t, http.StatusNotFound)
}
