package scim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// These check that a request the server refuses gets a SCIM error that
// says what is wrong, and leaves every resource, every listing and the
// audit log exactly as they were.

// fixture is a small directory to send bad requests against: ann is in
// ops; ben and dev exist so that renames can collide with them.
type fixture struct {
	ann, ben, ops, dev string // ids
}

func newFixture(t *testing.T, e *env) fixture {
	t.Helper()
	var f fixture
	f.ann = e.do("POST", "/Users", `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"userName": "ann@example.com",
		"externalId": "ext-ann",
		"displayName": "Ann Archer",
		"name": {"givenName": "Ann", "familyName": "Archer"},
		"emails": [{"value": "ann@work.example", "type": "work", "primary": true}, {"value": "ann@home.example", "type": "home"}],
		"active": true,
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}
	}`).want(t, http.StatusCreated).str("id")
	f.ben = e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "ben@example.com"}).want(t, http.StatusCreated).str("id")
	f.ops = e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "ops",
		"members": []any{map[string]any{"value": f.ann}}}).want(t, http.StatusCreated).str("id")
	f.dev = e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "dev"}).want(t, http.StatusCreated).str("id")
	return f
}

// expand replaces {ann}, {ben}, {ops} and {dev} with the ids.
func (f fixture) expand(s string) string {
	return strings.NewReplacer("{ann}", f.ann, "{ben}", f.ben, "{ops}", f.ops, "{dev}", f.dev).Replace(s)
}

// snapshot is everything a refused request must leave as it was.
type snapshot struct {
	docs    map[string]map[string]any // by path, as GET shows them
	etags   map[string]string
	users   any // totalResults of the listings
	groups  any
	events  []string // SCIM audit events, by sequence number and type
	history int      // membership history rows of ops
}

func (e *env) snapshot(t *testing.T, f fixture) snapshot {
	t.Helper()
	s := snapshot{docs: map[string]map[string]any{}, etags: map[string]string{}}
	for _, p := range []string{"/Users/" + f.ann, "/Users/" + f.ben, "/Groups/" + f.ops, "/Groups/" + f.dev} {
		// A resource a test deleted reads as its 404, which must not change either.
		r := e.do("GET", p, nil)
		s.docs[p], s.etags[p] = r.body, r.header.Get("ETag")
	}
	s.users = e.do("GET", "/Users?count=0", nil).want(t, http.StatusOK).body["totalResults"]
	s.groups = e.do("GET", "/Groups?count=0", nil).want(t, http.StatusOK).body["totalResults"]
	for _, ev := range e.events(t, "scim") {
		s.events = append(s.events, strconv.FormatInt(ev.Seq, 10)+" "+ev.Type)
	}
	h, err := e.store.MembershipHistory(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	s.history = len(h)
	return s
}

// events flushes the audit log and returns the events of type typ (or a
// dotted prefix of it).
func (e *env) events(t *testing.T, typ string) []store.AuditEvent {
	t.Helper()
	e.flush()
	evs, err := e.store.ListAudit(context.Background(), store.AuditQuery{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// diff says how after differs from s, or "" when it does not.
func (s snapshot) diff(after snapshot) string {
	var out []string
	for p, d := range s.docs {
		if !reflect.DeepEqual(d, after.docs[p]) {
			out = append(out, p+" changed: "+jsonText(d)+" became "+jsonText(after.docs[p]))
		}
		if s.etags[p] != after.etags[p] {
			out = append(out, p+" ETag "+s.etags[p]+" became "+after.etags[p])
		}
	}
	if s.users != after.users || s.groups != after.groups {
		out = append(out, "totals changed: users "+jsonText(s.users)+" → "+jsonText(after.users)+", groups "+jsonText(s.groups)+" → "+jsonText(after.groups))
	}
	if !reflect.DeepEqual(s.events, after.events) {
		out = append(out, "audit events "+jsonText(s.events)+" became "+jsonText(after.events))
	}
	if s.history != after.history {
		out = append(out, "membership history of ops has "+strconv.Itoa(after.history)+" rows, had "+strconv.Itoa(s.history))
	}
	return strings.Join(out, "; ")
}

// refusal is a request the server must refuse, and how.
type refusal struct {
	name, method, path, body string
	headers                  []string
	status                   int
	scimType                 string // "" for none
	detail                   string // what the detail must contain
}

// wantRefused sends each request against a fresh snapshot and checks the
// error and that nothing changed. The clock moves on before each request,
// so that a write would show in lastModified as well as in the version.
func wantRefused(t *testing.T, e *env, f fixture, cases []refusal) {
	t.Helper()
	before := e.snapshot(t, f)
	for _, c := range cases {
		e.now = e.now.Add(time.Second)
		r := e.do(c.method, f.expand(c.path), f.expand(c.body), c.headers...)
		if r.status != c.status || r.body["scimType"] != optional(c.scimType) {
			t.Errorf("%s: %s %s: %d %v, want %d %q: %s", c.name, c.method, c.path, r.status, r.body["scimType"], c.status, c.scimType, r.raw)
		}
		if !isSCIMError(r, c.status) {
			t.Errorf("%s: not a SCIM error body (%s): %s", c.name, r.header.Get("Content-Type"), r.raw)
		}
		if !strings.Contains(r.str("detail"), f.expand(c.detail)) {
			t.Errorf("%s: detail %q does not say %q", c.name, r.str("detail"), f.expand(c.detail))
		}
		after := e.snapshot(t, f)
		if d := before.diff(after); d != "" {
			t.Errorf("%s: the refused request changed something: %s", c.name, d)
		}
		before = after
	}
}

// jsonText is v as JSON, for messages.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// optional is what body["scimType"] holds for scimType: absent is nil.
func optional(scimType string) any {
	if scimType == "" {
		return nil
	}
	return scimType
}

// isSCIMError reports whether r is an RFC 7644 §3.12 error response.
func isSCIMError(r response, status int) bool {
	schemas, _ := r.body["schemas"].([]any)
	return len(schemas) == 1 && schemas[0] == messageError &&
		r.body["status"] == strconv.Itoa(status) &&
		r.header.Get("Content-Type") == "application/scim+json"
}

func patchBody(ops ...string) string {
	return `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [` + strings.Join(ops, ", ") + `]}`
}

const userSchemas = `"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]`
const groupSchemas = `"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]`

// Bad user bodies sent by POST, PUT and PATCH are refused with the
// scimType RFC 7644 gives them, and change nothing.
func TestBadUserInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	const unknownURN = "urn:example:params:scim:schemas:core:2.0:Person"
	var cases []refusal
	// The same bad documents, created and replaced.
	for _, target := range []struct{ method, path string }{{"POST", "/Users"}, {"PUT", "/Users/{ann}"}} {
		for _, c := range []refusal{
			{name: "malformed JSON", body: `{"schemas": [`, status: 400, scimType: invalidSyntax, detail: "not valid JSON"},
			{name: "empty body", body: ``, status: 400, scimType: invalidSyntax, detail: "not valid JSON"},
			{name: "not an object", body: `["ann@example.com"]`, status: 400, scimType: invalidSyntax, detail: "must be a JSON object"},
			{name: "two objects", body: `{"userName": "x@example.com"} {}`, status: 400, scimType: invalidSyntax, detail: "more than one JSON value"},
			{name: "unknown schema", body: `{"schemas": ["` + unknownURN + `"], "userName": "new@example.com"}`, status: 400, scimType: invalidValue, detail: unknownURN},
			{name: "group schema on a user", body: `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "new@example.com"}`, status: 400, scimType: invalidValue, detail: `"urn:ietf:params:scim:schemas:core:2.0:Group"`},
			{name: "schemas not a list", body: `{"schemas": "urn:ietf:params:scim:schemas:core:2.0:User", "userName": "new@example.com"}`, status: 400, scimType: invalidValue, detail: "schemas must be a list"},
			{name: "attribute of an unknown schema", body: `{` + userSchemas + `, "userName": "new@example.com", "urn:example:ext:2.0:User:level": "x"}`, status: 400, scimType: invalidValue, detail: "urn:example:ext:2.0:User:level"},
			{name: "active is a list", body: `{` + userSchemas + `, "userName": "new@example.com", "active": []}`, status: 400, scimType: invalidValue, detail: "active must be true or false"},
			{name: "active is a number", body: `{` + userSchemas + `, "userName": "new@example.com", "active": 1}`, status: 400, scimType: invalidValue, detail: "active must be true or false"},
			{name: "userName is a number", body: `{` + userSchemas + `, "userName": 5}`, status: 400, scimType: invalidValue, detail: "userName must be a string"},
			{name: "userName is an object", body: `{` + userSchemas + `, "userName": {"value": "new@example.com"}}`, status: 400, scimType: invalidValue, detail: "userName must be a string"},
			{name: "emails is a string", body: `{` + userSchemas + `, "userName": "new@example.com", "emails": "x"}`, status: 400, scimType: invalidValue, detail: "emails must be an object"},
			{name: "email primary is a string", body: `{` + userSchemas + `, "userName": "new@example.com", "emails": [{"value": "a@b", "primary": "yes"}]}`, status: 400, scimType: invalidValue, detail: "emails.primary must be true or false"},
			{name: "name is a string", body: `{` + userSchemas + `, "userName": "new@example.com", "name": "Ann Archer"}`, status: 400, scimType: invalidValue, detail: "name must be an object"},
			{name: "extension is a string", body: `{` + userSchemas + `, "userName": "new@example.com", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": "Finance"}`, status: 400, scimType: invalidValue, detail: SchemaEnterprise + " must be an object"},
			{name: "tag is a number", body: `{` + userSchemas + `, "userName": "new@example.com", "urn:ietf:params:scim:schemas:extension:keygate:2.0:User": {"tier": 3}}`, status: 400, scimType: invalidValue, detail: "a tag must be a string"},
			{name: "tag without key", body: `{` + userSchemas + `, "userName": "new@example.com", "urn:ietf:params:scim:schemas:extension:keygate:2.0:User": {"tags": [{"value": "x"}]}}`, status: 400, scimType: invalidValue, detail: "tags.key is required"},
			{name: "missing userName", body: `{` + userSchemas + `, "displayName": "Nobody"}`, status: 400, scimType: invalidValue, detail: "userName is required"},
			{name: "blank userName", body: `{` + userSchemas + `, "userName": "  "}`, status: 400, scimType: invalidValue, detail: "userName is required"},
			{name: "userName with whitespace", body: `{` + userSchemas + `, "userName": "ann archer"}`, status: 400, scimType: invalidValue, detail: "whitespace"},
			{name: "duplicate userName", body: `{` + userSchemas + `, "userName": "ben@example.com"}`, status: 409, scimType: uniqueness, detail: "already exists"},
			{name: "duplicate userName in other case", body: `{` + userSchemas + `, "userName": "BEN@Example.COM"}`, status: 409, scimType: uniqueness, detail: "without regard to case"},
		} {
			c.name = target.method + " " + c.name
			c.method, c.path = target.method, target.path
			cases = append(cases, c)
		}
	}
	// Creating ann again, in any case, collides with ann herself.
	cases = append(cases, refusal{name: "POST ann again", method: "POST", path: "/Users", body: `{` + userSchemas + `, "userName": "Ann@Example.com"}`, status: 409, scimType: uniqueness})
	// PUT and PATCH of a user that does not exist.
	cases = append(cases,
		refusal{name: "PUT unknown user", method: "PUT", path: "/Users/no-such-id", body: `{` + userSchemas + `, "userName": "new@example.com"}`, status: 404, detail: "no such user"},
		refusal{name: "PATCH unknown user", method: "PATCH", path: "/Users/no-such-id", body: patchBody(`{"op": "replace", "path": "displayName", "value": "x"}`), status: 404, detail: "no such user"},
		refusal{name: "DELETE unknown user", method: "DELETE", path: "/Users/no-such-id", status: 404, detail: "no such user"},
	)
	for _, c := range []refusal{
		{name: "malformed JSON", body: `{"Operations": [`, status: 400, scimType: invalidSyntax, detail: "not valid JSON"},
		{name: "not a PatchOp", body: `{` + userSchemas + `, "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}`, status: 400, scimType: invalidValue, detail: messagePatch},
		{name: "no operations", body: patchBody(), status: 400, scimType: invalidValue, detail: "needs Operations"},
		{name: "operations not a list", body: `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": {"op": "add"}}`, status: 400, scimType: invalidValue, detail: "Operations must be a list"},
		{name: "operation not an object", body: patchBody(`"replace"`), status: 400, scimType: invalidValue, detail: "operation 1 must be an object"},
		{name: "unknown op", body: patchBody(`{"op": "move", "path": "displayName", "value": "x"}`), status: 400, scimType: invalidSyntax, detail: `not "move"`},
		{name: "missing op", body: patchBody(`{"path": "displayName", "value": "x"}`), status: 400, scimType: invalidSyntax, detail: "op must be add, replace or remove"},
		{name: "add without value", body: patchBody(`{"op": "add"}`), status: 400, scimType: invalidValue, detail: "needs a value"},
		{name: "path not a string", body: patchBody(`{"op": "replace", "path": 7, "value": "x"}`), status: 400, scimType: invalidPath, detail: "path must be a string"},
		{name: "unknown attribute", body: patchBody(`{"op": "replace", "path": "nickname2", "value": "x"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "nickname2"`},
		{name: "unknown sub-attribute", body: patchBody(`{"op": "replace", "path": "name.nickname", "value": "x"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "nickname"`},
		{name: "unknown extension", body: patchBody(`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:other:2.0:User:level", "value": "x"}`), status: 400, scimType: invalidPath, detail: "unknown schema"},
		{name: "unknown enterprise attribute", body: patchBody(`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:level", "value": "x"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "level"`},
		{name: "unparsable path", body: patchBody(`{"op": "replace", "path": "emails[type eq", "value": "x"}`), status: 400, scimType: invalidPath, detail: "cannot parse path"},
		{name: "filter on a single value", body: patchBody(`{"op": "replace", "path": "active[value eq true]", "value": false}`), status: 400, scimType: invalidPath, detail: "not multi-valued"},
		{name: "sub-attribute of a multi-valued attribute", body: patchBody(`{"op": "replace", "path": "emails.value", "value": "x@example.com"}`), status: 400, scimType: invalidPath, detail: "select values with a filter"},
		{name: "remove without path", body: patchBody(`{"op": "remove"}`), status: 400, scimType: noTarget, detail: "remove needs a path"},
		{name: "remove with empty path", body: patchBody(`{"op": "Remove", "path": " "}`), status: 400, scimType: noTarget, detail: "remove needs a path"},
		{name: "filter matching nothing", body: patchBody(`{"op": "replace", "path": "emails[value co \"nobody\"].type", "value": "other"}`), status: 400, scimType: noTarget, detail: "no emails matches"},
		{name: "replace id", body: patchBody(`{"op": "replace", "path": "id", "value": "another-id"}`), status: 400, scimType: mutability, detail: "id is read-only"},
		{name: "replace meta", body: patchBody(`{"op": "replace", "path": "meta", "value": {"version": "W/\"9\""}}`), status: 400, scimType: mutability, detail: "meta is read-only"},
		{name: "replace meta.version", body: patchBody(`{"op": "replace", "path": "meta.version", "value": "W/\"9\""}`), status: 400, scimType: mutability, detail: "meta is read-only"},
		{name: "remove meta.lastModified", body: patchBody(`{"op": "remove", "path": "meta.lastModified"}`), status: 400, scimType: mutability, detail: "meta is read-only"},
		{name: "add groups", body: patchBody(`{"op": "add", "path": "groups", "value": [{"value": "{dev}"}]}`), status: 400, scimType: mutability, detail: "groups is read-only"},
		{name: "core-qualified id", body: patchBody(`{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:id", "value": "x"}`), status: 400, scimType: mutability, detail: "id is read-only"},
		{name: "active is a list", body: patchBody(`{"op": "replace", "path": "active", "value": []}`), status: 400, scimType: invalidValue, detail: "active must be true or false"},
		{name: "active is a string", body: patchBody(`{"op": "replace", "path": "active", "value": "no"}`), status: 400, scimType: invalidValue, detail: "active must be true or false"},
		{name: "path-less active is a list", body: patchBody(`{"op": "replace", "value": {"active": []}}`), status: 400, scimType: invalidValue, detail: "active must be true or false"},
		{name: "path-less value not an object", body: patchBody(`{"op": "replace", "value": "x"}`), status: 400, scimType: invalidValue, detail: "needs an object value"},
		{name: "userName is a number", body: patchBody(`{"op": "replace", "path": "userName", "value": 5}`), status: 400, scimType: invalidValue, detail: "userName must be a string"},
		{name: "emails is a string", body: patchBody(`{"op": "add", "path": "emails", "value": "x"}`), status: 400, scimType: invalidValue, detail: "emails must be an object"},
		{name: "filtered email value is a list", body: patchBody(`{"op": "replace", "path": "emails[type eq \"work\"].value", "value": ["a", "b"]}`), status: 400, scimType: invalidValue, detail: "must be a string"},
		{name: "remove userName", body: patchBody(`{"op": "remove", "path": "userName"}`), status: 400, scimType: invalidValue, detail: "userName is required"},
		{name: "userName null", body: patchBody(`{"op": "replace", "path": "userName", "value": null}`), status: 400, scimType: invalidValue, detail: "userName is required"},
		{name: "duplicate userName", body: patchBody(`{"op": "replace", "path": "userName", "value": "ben@example.com"}`), status: 409, scimType: uniqueness},
		{name: "duplicate userName in other case", body: patchBody(`{"op": "replace", "path": "userName", "value": "BEN@EXAMPLE.COM"}`), status: 409, scimType: uniqueness},
		{name: "duplicate userName without path", body: patchBody(`{"op": "Replace", "value": {"userName": "Ben@Example.com"}}`), status: 409, scimType: uniqueness},
		// All or nothing: the valid operations before a bad one are not kept.
		{name: "valid then unknown path", body: patchBody(
			`{"op": "replace", "path": "displayName", "value": "Changed"}`,
			`{"op": "replace", "path": "nickname2", "value": "x"}`), status: 400, scimType: invalidPath},
		{name: "valid then bad value", body: patchBody(
			`{"op": "replace", "path": "active", "value": false}`,
			`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Legal"}`,
			`{"op": "add", "path": "emails", "value": "x"}`), status: 400, scimType: invalidValue},
		{name: "valid then read-only", body: patchBody(
			`{"op": "replace", "path": "name.givenName", "value": "Anna"}`,
			`{"op": "replace", "path": "meta.version", "value": "W/\"1\""}`), status: 400, scimType: mutability},
		{name: "valid then unknown op", body: patchBody(
			`{"op": "replace", "path": "displayName", "value": "Changed"}`,
			`{"op": "copy", "path": "displayName"}`), status: 400, scimType: invalidSyntax},
		{name: "valid then duplicate", body: patchBody(
			`{"op": "replace", "path": "displayName", "value": "Changed"}`,
			`{"op": "replace", "path": "userName", "value": "ben@EXAMPLE.com"}`), status: 409, scimType: uniqueness},
		{name: "valid then remove userName", body: patchBody(
			`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:keygate:2.0:User:environment", "value": "prod"}`,
			`{"op": "remove", "path": "userName"}`), status: 400, scimType: invalidValue},
	} {
		c.name = "PATCH " + c.name
		c.method, c.path = "PATCH", "/Users/{ann}"
		cases = append(cases, c)
	}
	wantRefused(t, e, f, cases)
}

// Bad group bodies sent by POST, PUT and PATCH are refused and change
// nothing, members included.
func TestBadGroupInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	var cases []refusal
	for _, target := range []struct{ method, path string }{{"POST", "/Groups"}, {"PUT", "/Groups/{ops}"}} {
		for _, c := range []refusal{
			{name: "malformed JSON", body: `{"displayName": "x"`, status: 400, scimType: invalidSyntax, detail: "not valid JSON"},
			{name: "not an object", body: `"ops"`, status: 400, scimType: invalidSyntax, detail: "must be a JSON object"},
			{name: "unknown schema", body: `{"schemas": ["urn:example:Team"], "displayName": "new"}`, status: 400, scimType: invalidValue, detail: `"urn:example:Team"`},
			{name: "user schema on a group", body: `{` + userSchemas + `, "displayName": "new"}`, status: 400, scimType: invalidValue, detail: `unknown schema "` + SchemaUser + `"`},
			{name: "user extension on a group", body: `{"schemas": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"], "displayName": "new"}`, status: 400, scimType: invalidValue, detail: SchemaEnterprise},
			{name: "displayName is a list", body: `{` + groupSchemas + `, "displayName": []}`, status: 400, scimType: invalidValue, detail: "displayName"},
			{name: "displayName is a number", body: `{` + groupSchemas + `, "displayName": 5}`, status: 400, scimType: invalidValue, detail: "displayName must be a string"},
			{name: "members is a string", body: `{` + groupSchemas + `, "displayName": "new", "members": "x"}`, status: 400, scimType: invalidValue, detail: "members must be an object"},
			{name: "member without value", body: `{` + groupSchemas + `, "displayName": "new", "members": [{"display": "ann"}]}`, status: 400, scimType: invalidValue, detail: "members.value is required"},
			{name: "member with empty value", body: `{` + groupSchemas + `, "displayName": "new", "members": [{"value": ""}]}`, status: 400, scimType: invalidValue, detail: "a member needs a value"},
			{name: "nested group", body: `{` + groupSchemas + `, "displayName": "new", "members": [{"value": "{dev}", "type": "Group"}]}`, status: 400, scimType: invalidValue, detail: "nested groups"},
			{name: "unknown member", body: `{` + groupSchemas + `, "displayName": "new", "members": [{"value": "{ann}"}, {"value": "no-such-user"}]}`, status: 400, scimType: invalidValue, detail: "not a user keygate knows"},
			{name: "missing displayName", body: `{` + groupSchemas + `, "members": []}`, status: 400, scimType: invalidValue, detail: "displayName is required"},
			{name: "duplicate displayName", body: `{` + groupSchemas + `, "displayName": "dev"}`, status: 409, scimType: uniqueness, detail: "already exists"},
			{name: "duplicate displayName in other case", body: `{` + groupSchemas + `, "displayName": "DEV"}`, status: 409, scimType: uniqueness, detail: "already exists"},
		} {
			c.name = target.method + " " + c.name
			c.method, c.path = target.method, target.path
			cases = append(cases, c)
		}
	}
	cases = append(cases,
		refusal{name: "POST ops again", method: "POST", path: "/Groups", body: `{` + groupSchemas + `, "displayName": "Ops"}`, status: 409, scimType: uniqueness},
		refusal{name: "PUT unknown group", method: "PUT", path: "/Groups/no-such-id", body: `{` + groupSchemas + `, "displayName": "new"}`, status: 404, detail: "no such group"},
		refusal{name: "PATCH unknown group", method: "PATCH", path: "/Groups/no-such-id", body: patchBody(`{"op": "replace", "path": "displayName", "value": "x"}`), status: 404, detail: "no such group"},
		refusal{name: "DELETE unknown group", method: "DELETE", path: "/Groups/no-such-id", status: 404, detail: "no such group"},
	)
	for _, c := range []refusal{
		{name: "malformed JSON", body: `{"Operations": [{"op": "add"}`, status: 400, scimType: invalidSyntax},
		{name: "unknown op", body: patchBody(`{"op": "merge", "path": "members", "value": [{"value": "{ben}"}]}`), status: 400, scimType: invalidSyntax, detail: `not "merge"`},
		{name: "unknown attribute", body: patchBody(`{"op": "replace", "path": "owner", "value": "x"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "owner"`},
		{name: "user attribute", body: patchBody(`{"op": "replace", "path": "userName", "value": "x"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "userName"`},
		{name: "unknown member sub-attribute", body: patchBody(`{"op": "remove", "path": "members[value eq \"{ann}\"].role"}`), status: 400, scimType: invalidPath, detail: `unknown attribute "role"`},
		{name: "remove without path", body: patchBody(`{"op": "remove"}`), status: 400, scimType: noTarget, detail: "remove needs a path"},
		{name: "replace id", body: patchBody(`{"op": "replace", "path": "id", "value": "x"}`), status: 400, scimType: mutability, detail: "id is read-only"},
		{name: "replace meta", body: patchBody(`{"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"}`), status: 400, scimType: mutability, detail: "meta is read-only"},
		{name: "change a member's display", body: patchBody(`{"op": "replace", "path": "members[value eq \"{ann}\"].display", "value": "x"}`), status: 400, scimType: mutability},
		{name: "add through a member filter", body: patchBody(`{"op": "add", "path": "members[value eq \"{ben}\"]", "value": {"value": "{ben}"}}`), status: 400, scimType: invalidPath},
		{name: "displayName is a list", body: patchBody(`{"op": "replace", "path": "displayName", "value": ["a"]}`), status: 400, scimType: invalidValue},
		{name: "remove displayName", body: patchBody(`{"op": "remove", "path": "displayName"}`), status: 400, scimType: invalidValue, detail: "displayName is required"},
		{name: "unknown member", body: patchBody(`{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}`), status: 400, scimType: invalidValue, detail: "not a user keygate knows"},
		{name: "members is a string", body: patchBody(`{"op": "add", "path": "members", "value": "x"}`), status: 400, scimType: invalidValue},
		{name: "member without value", body: patchBody(`{"op": "add", "path": "members", "value": [{"display": "ben"}]}`), status: 400, scimType: invalidValue, detail: "members.value is required"},
		{name: "remove member without value", body: patchBody(`{"op": "remove", "path": "members", "value": [{"display": "ann"}]}`), status: 400, scimType: invalidValue, detail: "members.value is required"},
		{name: "duplicate displayName", body: patchBody(`{"op": "replace", "path": "displayName", "value": "Dev"}`), status: 409, scimType: uniqueness},
		{name: "duplicate displayName without path", body: patchBody(`{"op": "replace", "value": {"displayName": "DEV"}}`), status: 409, scimType: uniqueness},
		// All or nothing: neither the rename nor the membership changes
		// before a bad operation are kept.
		{name: "valid members then unknown path", body: patchBody(
			`{"op": "add", "path": "members", "value": [{"value": "{ben}"}]}`,
			`{"op": "remove", "path": "members[value eq \"{ann}\"]"}`,
			`{"op": "replace", "path": "owner", "value": "x"}`), status: 400, scimType: invalidPath},
		{name: "rename then unknown member", body: patchBody(
			`{"op": "replace", "path": "displayName", "value": "operations"}`,
			`{"op": "add", "path": "members", "value": [{"value": "{ben}"}, {"value": "no-such-user"}]}`), status: 400, scimType: invalidValue},
		{name: "members replaced then duplicate name", body: patchBody(
			`{"op": "replace", "path": "members", "value": [{"value": "{ben}"}]}`,
			`{"op": "replace", "path": "displayName", "value": "DEV"}`), status: 409, scimType: uniqueness},
		{name: "members removed then read-only", body: patchBody(
			`{"op": "remove", "path": "members"}`,
			`{"op": "replace", "path": "id", "value": "x"}`), status: 400, scimType: mutability},
	} {
		c.name = "PATCH " + c.name
		c.method, c.path = "PATCH", "/Groups/{ops}"
		cases = append(cases, c)
	}
	wantRefused(t, e, f, cases)
}

// A body over 1 MiB gets 413 with a SCIM error, on every write, and
// nothing is created or changed.
func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	pad := strings.Repeat("a", maxBody)
	user := `{` + userSchemas + `, "userName": "big@example.com", "displayName": "` + pad + `"}`
	group := `{` + groupSchemas + `, "displayName": "big", "externalId": "` + pad + `"}`
	patch := patchBody(`{"op": "replace", "path": "displayName", "value": "` + pad + `"}`)
	var cases []refusal
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/Users", user}, {"PUT", "/Users/{ann}", user}, {"PATCH", "/Users/{ann}", patch},
		{"POST", "/Groups", group}, {"PUT", "/Groups/{ops}", group}, {"PATCH", "/Groups/{ops}", patch},
	} {
		cases = append(cases, refusal{name: c.method + " " + c.path, method: c.method, path: c.path, body: c.body,
			status: http.StatusRequestEntityTooLarge, detail: "larger than 1048576 bytes"})
	}
	wantRefused(t, e, f, cases)

	// Just under the limit is fine.
	small := `{` + userSchemas + `, "userName": "big@example.com", "displayName": ""}`
	body := small[:len(small)-2] + strings.Repeat("x", maxBody-len(small)) + `"}`
	if len(body) != maxBody {
		t.Fatalf("body is %d bytes", len(body))
	}
	e.do("POST", "/Users", body).want(t, http.StatusCreated)
}

// More than maxPatchOps operations are refused as tooMany, and change
// nothing.
func TestTooManyPatchOperations(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	ops := make([]string, maxPatchOps+1)
	for i := range ops {
		ops[i] = `{"op": "replace", "path": "displayName", "value": "x` + strconv.Itoa(i) + `"}`
	}
	wantRefused(t, e, f, []refusal{
		{name: "user", method: "PATCH", path: "/Users/{ann}", body: patchBody(ops...), status: 413, scimType: tooMany, detail: "at most 1000 operations"},
		{name: "group", method: "PATCH", path: "/Groups/{ops}", body: patchBody(ops...), status: 413, scimType: tooMany},
	})
}

// The snapshot that shows refusals changed nothing does see changes: a
// valid PATCH of a user, a member added and a user created each show.
func TestSnapshotSeesChanges(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/Users/{ann}", patchBody(`{"op": "replace", "path": "displayName", "value": "Changed"}`)},
		{"PATCH", "/Groups/{ops}", patchBody(`{"op": "add", "path": "members", "value": [{"value": "{ben}"}]}`)},
		{"POST", "/Users", `{` + userSchemas + `, "userName": "cy@example.com"}`},
	} {
		before := e.snapshot(t, f)
		e.now = e.now.Add(time.Second)
		e.do(c.method, f.expand(c.path), f.expand(c.body)).want(t, map[string]int{"PATCH": 200, "POST": 201}[c.method])
		if before.diff(e.snapshot(t, f)) == "" {
			t.Errorf("%s %s: the snapshot saw no change", c.method, c.path)
		}
	}
}

// GET returns the version as the ETag; PUT, PATCH and DELETE with a stale
// If-Match get 412 and change nothing; with the current one they succeed.
func TestIfMatch(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t, e)
	for _, rt := range []struct {
		path, put, patch string
	}{
		{"/Users/{ann}", `{` + userSchemas + `, "userName": "ann@example.com", "displayName": "Ann Put"}`, patchBody(`{"op": "replace", "path": "displayName", "value": "Ann Patched"}`)},
		{"/Groups/{ops}", `{` + groupSchemas + `, "displayName": "ops", "members": [{"value": "{ben}"}]}`, patchBody(`{"op": "replace", "path": "displayName", "value": "ops-patched"}`)},
	} {
		path := f.expand(rt.path)
		r := e.do("GET", path, nil).want(t, http.StatusOK)
		tag := r.header.Get("ETag")
		if !strings.HasPrefix(tag, `W/"`) || tag != r.str("meta.version") {
			t.Fatalf("GET %s: ETag %q, meta.version %q; want the same weak tag", rt.path, tag, r.str("meta.version"))
		}
		v, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(tag, "W/"), `"`))
		if err != nil {
			t.Fatalf("ETag %q: %v", tag, err)
		}
		version := func(n int) string { return `W/"` + strconv.Itoa(n) + `"` }

		// Move on one version with the current tag.
		r = e.do("PATCH", path, f.expand(rt.patch), "If-Match", version(v)).want(t, http.StatusOK)
		if r.header.Get("ETag") != version(v+1) || r.str("meta.version") != version(v+1) {
			t.Fatalf("PATCH %s: ETag %q, meta.version %q; want %s", rt.path, r.header.Get("ETag"), r.str("meta.version"), version(v+1))
		}
		if g := e.do("GET", path, nil); g.header.Get("ETag") != version(v+1) {
			t.Fatalf("GET %s after PATCH: ETag %q, want %s", rt.path, g.header.Get("ETag"), version(v+1))
		}
		v++

		// Stale tags are refused, whatever the verb.
		var cases []refusal
		for _, stale := range []string{version(v - 1), `"` + strconv.Itoa(v-1) + `"`, version(v + 1), version(v-1) + ", " + version(v+1), `W/"abc"`} {
			for _, c := range []struct{ method, body string }{{"PUT", rt.put}, {"PATCH", rt.patch}, {"DELETE", ""}} {
				cases = append(cases, refusal{name: c.method + " " + rt.path + " If-Match " + stale, method: c.method, path: rt.path, body: c.body,
					headers: []string{"If-Match", stale}, status: http.StatusPreconditionFailed, detail: "at version " + version(v)})
			}
		}
		wantRefused(t, e, f, cases)

		// The current tag, weak or strong, alone or in a list, and *.
		e.do("PUT", path, f.expand(rt.put), "If-Match", version(v)).want(t, http.StatusOK)
		e.do("PATCH", path, f.expand(rt.patch), "If-Match", `"`+strconv.Itoa(v+1)+`"`).want(t, http.StatusOK)
		e.do("PUT", path, f.expand(rt.put), "If-Match", version(v-1)+", "+version(v+2)).want(t, http.StatusOK)
		r = e.do("PATCH", path, f.expand(rt.patch), "If-Match", "*").want(t, http.StatusOK)
		if r.str("meta.version") != version(v+4) {
			t.Fatalf("%s after four conditional writes: version %q, want %s", rt.path, r.str("meta.version"), version(v+4))
		}
		e.do("DELETE", path, nil, "If-Match", version(v+3)).want(t, http.StatusPreconditionFailed)
		e.do("DELETE", path, nil, "If-Match", version(v+4)).want(t, http.StatusNoContent)
		e.do("GET", path, nil).want(t, http.StatusNotFound)
	}
}
