package scim

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// These replay the requests Okta's SCIM 2.0 provisioning sends: lookups
// with count=100&startIndex=1, a create body with a password and groups,
// profile updates by PUT, deactivation as a path-less replace, a group
// rename sent in the same PATCH as membership changes.

func TestOktaUserLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.do("GET", "/Users?filter="+q(`userName eq "test.user@okta.local"`)+"&startIndex=1&count=100", nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(0) || r.body["startIndex"] != float64(1) || r.body["itemsPerPage"] != float64(0) {
		t.Fatalf("lookup: %s", r.raw)
	}
	create := `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName": "test.user@okta.local",
		"name": {"givenName": "Test", "familyName": "User"},
		"emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
		"displayName": "Test User",
		"locale": "en-US",
		"externalId": "00ujl29u0le5T6Aj10h7",
		"groups": [],
		"password": "1mz050nq",
		"active": true
	}`
	r = e.do("POST", "/Users", create).want(t, http.StatusCreated)
	id := r.str("id")
	if _, ok := r.body["password"]; ok {
		t.Fatal("the password came back")
	}
	u, err := e.store.GetUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(u.Profile), "1mz050nq") {
		t.Fatal("the password was stored")
	}
	// The same userName again: 409, so Okta links the existing user.
	e.do("POST", "/Users", strings.Replace(create, `"test.user@okta.local",`, `"TEST.USER@okta.local",`, 1)).want(t, http.StatusConflict, uniqueness)

	// Profile update by PUT, with the read-only attributes Okta echoes.
	r = e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK)
	body := r.body
	body["name"] = map[string]any{"givenName": "Another", "familyName": "User"}
	body["password"] = "newpassword1"
	e.do("PUT", "/Users/"+id, body).want(t, http.StatusOK)
	r = e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK)
	if r.str("name.givenName") != "Another" || r.str("locale") != "en-US" || r.str("externalId") != "00ujl29u0le5T6Aj10h7" {
		t.Fatalf("after PUT: %s", r.raw)
	}

	// Deactivate, then reactivate, as path-less replaces.
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "replace", "value": {"active": false}}]}`).want(t, http.StatusOK)
	if u, _ := e.store.GetUser(ctx, id); u.Active {
		t.Fatal("still active after deactivation")
	}
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "replace", "value": {"active": true}}]}`).want(t, http.StatusOK)
	if u, _ := e.store.GetUser(ctx, id); !u.Active {
		t.Fatal("not active after reactivation")
	}
	e.do("DELETE", "/Users/"+id, nil).want(t, http.StatusNoContent)
	e.do("GET", "/Users?filter="+q(`userName eq "test.user@okta.local"`)+"&startIndex=1&count=100", nil).want(t, http.StatusOK)
}

func TestOktaGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"a@okta.local", "b@okta.local", "c@okta.local"} {
		ids = append(ids, e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": n}).want(t, http.StatusCreated).str("id"))
	}
	gid := e.do("POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []}`).want(t, http.StatusCreated).str("id")
	r := e.do("GET", "/Groups?startIndex=1&count=100", nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(1) {
		t.Fatalf("group list: %s", r.raw)
	}
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "add", "path": "members", "value": [{"value": "`+ids[0]+`", "display": "a@okta.local"}, {"value": "`+ids[1]+`", "display": "b@okta.local"}]}]}`).want(t, http.StatusOK)
	wantMembers(t, e, gid, "a@okta.local", "b@okta.local")

	// A rename sent together with membership changes: all or nothing.
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [
			{"op": "replace", "value": {"id": "`+gid+`", "displayName": "Renamed SCIMv2"}},
			{"op": "remove", "path": "members[value eq \"`+ids[0]+`\"]"},
			{"op": "add", "path": "members", "value": [{"value": "`+ids[2]+`", "display": "c@okta.local"}]}
		]}`).want(t, http.StatusOK)
	if g, _ := e.store.GetGroup(ctx, gid); g.Name != "Renamed SCIMv2" {
		t.Fatalf("name %q", g.Name)
	}
	wantMembers(t, e, gid, "b@okta.local", "c@okta.local")

	// Okta's PUT carries the whole group: members not listed are removed.
	e.do("PUT", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "`+gid+`",
		"displayName": "Renamed SCIMv2", "members": [{"value": "`+ids[2]+`", "display": "c@okta.local"}]}`).want(t, http.StatusOK)
	wantMembers(t, e, gid, "c@okta.local")

	e.do("DELETE", "/Groups/"+gid, nil).want(t, http.StatusNoContent)
	if r := e.do("GET", "/Groups?startIndex=1&count=100", nil).want(t, http.StatusOK); r.body["totalResults"] != float64(0) {
		t.Fatalf("after delete: %s", r.raw)
	}
}

// Okta pages through everything with count=100&startIndex=1, 101, ...
func TestOktaPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 250 {
		e.now = e.now.Add(1)
		e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "user" + strconv.Itoa(i) + "@okta.local"}).want(t, http.StatusCreated)
	}
	seen := map[string]bool{}
	for start := 1; ; start += 100 {
		r := e.do("GET", "/Users?count=100&startIndex="+strconv.Itoa(start), nil).want(t, http.StatusOK)
		if r.body["totalResults"] != float64(250) || r.body["startIndex"] != float64(start) {
			t.Fatalf("page at %d: %v %v", start, r.body["totalResults"], r.body["startIndex"])
		}
		res := r.resources()
		if len(res) == 0 {
			break
		}
		if r.body["itemsPerPage"] != float64(len(res)) {
			t.Fatalf("itemsPerPage %v for %d resources", r.body["itemsPerPage"], len(res))
		}
		for _, u := range res {
			id := u["id"].(string)
			if seen[id] {
				t.Fatalf("user %s on two pages", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 250 {
		t.Fatalf("paged through %d users, want 250", len(seen))
	}
}
