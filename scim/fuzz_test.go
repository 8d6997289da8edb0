package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
)

var fuzzClock = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// fuzzUsers are the documents filters are evaluated against: every kind of
// attribute (strings, booleans, date-times, multi-valued complex, the
// extensions) with values filters in the seed corpus hit and miss.
var fuzzUsers = []string{
	`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice", "externalId": "a-1",
	  "name": {"givenName": "Alice", "familyName": "Liddell"}, "displayName": "Alice L", "active": true,
	  "emails": [{"value": "alice@example.com", "type": "work", "primary": true}, {"value": "al@home.example", "type": "home"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance", "employeeNumber": "701", "manager": {"value": "b-2"}},
	  "urn:ietf:params:scim:schemas:extension:keygate:2.0:User": {"project": "ledger", "environment": "prod", "team": "core"}}`,
	`{"userName": "Bob", "active": false, "emails": [{"value": "bob@example.com", "type": "work"}]}`,
	`{"userName": "carol.o'neil", "title": "DBA", "phoneNumbers": [{"value": "+1 555", "type": "mobile"}]}`,
}

func fuzzDocs(t testing.TB) []doc {
	var out []doc
	for _, s := range fuzzUsers {
		raw, err := decodeObject([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		d, err := normalize(userType, raw)
		if err != nil {
			t.Fatal(err)
		}
		d["id"] = "id-" + d.str("userName")
		d["meta"] = meta("User", fuzzClock, fuzzClock, "/Users/x", 1)
		out = append(out, d)
	}
	return out
}

// mustBeClientError fails unless err is a SCIM error the client is to
// blame for: anything else would reach the client as a 500.
func mustBeClientError(t *testing.T, input string, err error) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("%q: error %v (%T) is not a SCIM error", input, err, err)
	}
	if se.Status < 400 || se.Status > 499 || se.Detail == "" {
		t.Fatalf("%q: error %+v is not a 4xx with a detail", input, se)
	}
}

// FuzzFilter parses filters and evaluates them against users: nothing
// panics, every refusal is a 400 invalidFilter, and the equality pushed down
// to the store's index never drops a user the full filter matches.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "alice"`,
		`USERNAME Eq "ALICE" and active eq true`,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName sw "a"`,
		`emails[type eq "work" and primary eq true]`,
		`emails[type eq "work"].value co "@example"`,
		`not (userName eq "bob") or externalId pr`,
		`userName eq "bob" or externalId eq "a-1"`,
		`meta.lastModified gt "2026-01-01T00:00:00Z"`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Finance"`,
		`urn:ietf:params:scim:schemas:extension:keygate:2.0:User:project ew "ger"`,
		`name.familyName le "M" and (title ne "DBA" or active eq false)`,
		`userName eq "a\"b"`,
		`userName eq 5`,
		`emails[value`,
		`nosuch pr`,
	} {
		f.Add(s)
	}
	docs := fuzzDocs(f)
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s)
		if err != nil {
			mustBeClientError(t, s, err)
			return
		}
		attr, value, pushed := pushdown(e)
		m := matcher{rt: userType}
		for _, d := range docs {
			ok, err := m.match(e, d)
			if err != nil {
				mustBeClientError(t, s, err)
				var se *Error
				if errors.As(err, &se); se.ScimType != invalidFilter {
					t.Fatalf("%q: scimType %q, want invalidFilter", s, se.ScimType)
				}
				return
			}
			if ok && pushed && !strings.EqualFold(d.str(attr), value) {
				t.Fatalf("%q matches %v, but the store would look up %s = %q only", s, d["userName"], attr, value)
			}
		}
	})
}

// FuzzPatch applies PATCH bodies to a user: nothing panics, every refusal
// is a 4xx SCIM error, and what a successful PATCH leaves behind is still a
// valid user that keygate can store, with id and meta untouched.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false, "name.familyName": "Smith"}}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.example"}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "emails[type eq \"home\"]"}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:keygate:2.0:User:environment", "value": "dev"}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}}}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "userName", "value": ""}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "id", "value": "x"}]}`,
		`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "nosuch.thing[a eq 1]"}]}`,
		`{"Operations": []}`,
		`[1, 2]`,
	} {
		f.Add(s)
	}
	docs := fuzzDocs(f)
	f.Fuzz(func(t *testing.T, body string) {
		ops, err := parsePatch([]byte(body))
		if err != nil {
			mustBeClientError(t, body, err)
			return
		}
		for _, orig := range docs {
			d := orig.clone()
			if err := applyPatch(userType, d, ops); err != nil {
				mustBeClientError(t, body, err)
				continue
			}
			if d["id"] != orig["id"] || !jsonEqual(d["meta"], orig["meta"]) {
				t.Fatalf("%q changed id or meta: %v %v", body, d["id"], d["meta"])
			}
			// What is left must read back as a user, as it would after
			// being stored and fetched.
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatalf("%q: the patched user does not encode: %v", body, err)
			}
			obj, err := decodeObject(raw)
			if err != nil {
				t.Fatalf("%q: the patched user does not decode: %v", body, err)
			}
			again, err := normalize(userType, obj)
			if err != nil {
				t.Fatalf("%q left an invalid user %s: %v", body, raw, err)
			}
			u := identity.User{ID: "x"}
			if err := userFromDoc(again, &u); err != nil {
				mustBeClientError(t, body, err)
			}
		}
	})
}

// FuzzPatchPath resolves PATCH paths on both resource types: nothing
// panics, and every refusal is a 4xx SCIM error.
func FuzzPatchPath(f *testing.F) {
	for _, s := range []string{
		`members`,
		`members[value eq "2819c223"]`,
		`emails[type eq "work"].value`,
		`name.familyName`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`,
		`urn:ietf:params:scim:schemas:extension:keygate:2.0:User:anything`,
		`urn:ietf:params:scim:schemas:core:2.0:User:active`,
		`urn:example:unknown:attr`,
		`meta.created`,
		`emails[type eq`,
		`displayName.sub`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		for _, rt := range []*resourceType{userType, groupType} {
			if _, err := resolvePath(rt, path); err != nil {
				mustBeClientError(t, path, err)
			}
		}
	})
}

// jsonEqual compares two values as their JSON.
func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// FuzzCanonicalPath feeds arbitrary request paths to the spelling that
// routing sees: nothing panics, spelling twice changes nothing more, a path
// outside Prefix is left alone, and nothing changes but the endpoint
// name's case and one trailing slash, so a resource id keeps its exact
// bytes.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{Prefix + "/users/", Prefix + "/GROUPS/AbC-1/", Prefix + "/Users/a%2Fb", Prefix + "/", Prefix + "//", "/SCIM/V2/users", Prefix + "/Schemas/urn:x:y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := canonicalPath(in)
		if again := canonicalPath(out); again != out {
			t.Fatalf("canonicalPath(%q) = %q, then %q", in, out, again)
		}
		rest, under := strings.CutPrefix(in, Prefix+"/")
		if !under {
			if out != in {
				t.Fatalf("canonicalPath(%q) = %q outside %s", in, out, Prefix)
			}
			return
		}
		if out == in {
			return
		}
		trimmed := strings.TrimSuffix(in, "/")
		name, _, _ := strings.Cut(rest, "/")
		after := len(Prefix) + 1 + len(name)
		if len(out) != len(trimmed) || !strings.EqualFold(out[:after], trimmed[:after]) || out[after:] != trimmed[after:] {
			t.Fatalf("canonicalPath(%q) = %q changes more than the endpoint name's case and a trailing slash", in, out)
		}
	})
}
