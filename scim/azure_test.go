package scim

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/keygate/keygate/store"
)

// These replay the requests Azure AD (Entra ID) sends, in the shapes its
// provisioning documentation and its list of SCIM compliance issues show:
// capitalised ops, "False" strings, path-less multi-attribute replaces,
// emails[type eq "work"].value, members removed by value, the AD group
// schema, excludedAttributes=members.

func q(filter string) string { return url.QueryEscape(filter) }

func TestAzureUserLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	userName := "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"

	// Create: look the user up first, get an empty list, then POST.
	r := e.do("GET", "/Users?filter="+q(`userName eq "`+userName+`"`), nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(0) || len(r.resources()) != 0 {
		t.Fatalf("lookup before create: %s", r.raw)
	}
	r = e.do("POST", "/Users", `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
		"userName": "`+userName+`",
		"active": true,
		"emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
		"meta": {"resourceType": "User"},
		"name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
		"roles": [],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance", "manager": {"value": "boss-1"}}
	}`).want(t, http.StatusCreated)
	id := r.str("id")
	if r.header.Get("Location") == "" || r.header.Get("ETag") != `W/"1"` || r.str("meta.resourceType") != "User" {
		t.Fatalf("create response: %v %s", r.header, r.raw)
	}
	r = e.do("GET", "/Users?filter="+q(`userName eq "`+userName+`"`), nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(1) || r.resources()[0]["id"] != id {
		t.Fatalf("lookup after create: %s", r.raw)
	}

	// Update multi-valued and complex attributes, capitalised ops.
	e.do("PATCH", "/Users/"+id, `{
		"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [
			{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
			{"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
		]}`).want(t, http.StatusOK)
	u, err := e.store.GetUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "updatedEmail@microsoft.com" || u.Attributes["department"] != "Finance" || u.Attributes["manager"] != "boss-1" {
		t.Fatalf("after multi-valued update: %+v", u)
	}
	r = e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK)
	if r.str("name.familyName") != "updatedFamilyName" || r.str("name.givenName") != "givenName" {
		t.Fatalf("name after update: %s", r.raw)
	}

	// Single-valued attribute.
	newName := "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Replace", "path": "userName", "value": "`+newName+`"}]}`).want(t, http.StatusOK)

	// Multi-attribute replace without a path, with dotted and fully
	// qualified keys.
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Replace", "value": {
			"displayName": "Pvl Edwards",
			"name.givenName": "Pvl",
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Engineering",
			"urn:ietf:params:scim:schemas:extension:keygate:2.0:User:environment": "prod"
		}}]}`).want(t, http.StatusOK)
	u, _ = e.store.GetUser(ctx, id)
	if u.UserName != newName || u.DisplayName != "Pvl Edwards" || u.Attributes["department"] != "Engineering" || u.Attributes["environment"] != "prod" {
		t.Fatalf("after path-less replace: %+v", u)
	}

	// Disable with a string boolean, as Azure AD sends it.
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Replace", "path": "active", "value": "False"}]}`).want(t, http.StatusOK)
	u, _ = e.store.GetUser(ctx, id)
	if u.Active {
		t.Fatal("user still active after Replace active \"False\"")
	}
	// Disabled people stay readable.
	if r := e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK); r.body["active"] != false {
		t.Fatalf("disabled user reads %s", r.raw)
	}

	e.do("DELETE", "/Users/"+id, nil).want(t, http.StatusNoContent)
	e.do("GET", "/Users/"+id, nil).want(t, http.StatusNotFound)
	e.do("DELETE", "/Users/"+id, nil).want(t, http.StatusNotFound)

	e.flush()
	events, err := e.store.ListAudit(ctx, store.AuditQuery{Type: "scim"})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range events {
		if ev.Actor != "scim:azure-ad" {
			t.Fatalf("event %s has actor %q", ev.Type, ev.Actor)
		}
		types = append(types, ev.Type)
	}
	want := []string{"scim.user.create", "scim.user.update", "scim.user.update", "scim.user.update", "scim.user.update", "scim.user.delete"}
	if !slices.Equal(types, want) {
		t.Fatalf("audit: %v, want %v", types, want)
	}
}

func TestAzureGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"ann@contoso.com", "ben@contoso.com", "cat@contoso.com"} {
		ids = append(ids, e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": n, "active": true}).want(t, http.StatusCreated).str("id"))
	}

	r := e.do("POST", "/Groups", `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
		"externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
		"displayName": "analysts",
		"meta": {"resourceType": "Group"}
	}`).want(t, http.StatusCreated)
	gid := r.str("id")

	// Reads that skip the members.
	r = e.do("GET", "/Groups/"+gid+"?excludedAttributes=members", nil).want(t, http.StatusOK)
	if _, ok := r.body["members"]; ok || r.str("displayName") != "analysts" {
		t.Fatalf("group without members: %s", r.raw)
	}
	r = e.do("GET", "/Groups?excludedAttributes=members&filter="+q(`displayName eq "analysts"`), nil).want(t, http.StatusOK)
	if len(r.resources()) != 1 || r.resources()[0]["members"] != nil {
		t.Fatalf("group lookup: %s", r.raw)
	}

	// Add members, one request each and several at once, with "$ref": null.
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "`+ids[0]+`"}]}]}`).want(t, http.StatusOK)
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "`+ids[1]+`"}, {"$ref": null, "value": "`+ids[2]+`"}]}]}`).want(t, http.StatusOK)
	wantMembers(t, e, gid, "ann@contoso.com", "ben@contoso.com", "cat@contoso.com")

	// Remove a member: by value, and with a filter path.
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "`+ids[0]+`"}]}]}`).want(t, http.StatusOK)
	wantMembers(t, e, gid, "ben@contoso.com", "cat@contoso.com")
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Remove", "path": "members[value eq \"`+ids[1]+`\"]"}]}`).want(t, http.StatusOK)
	wantMembers(t, e, gid, "cat@contoso.com")

	// Rename.
	e.do("PATCH", "/Groups/"+gid, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Replace", "path": "displayName", "value": "data-analysts"}]}`).want(t, http.StatusOK)
	if g, err := e.store.GetGroup(ctx, gid); err != nil || g.Name != "data-analysts" {
		t.Fatalf("after rename: %+v %v", g, err)
	}

	// History keeps who left and through what.
	h, err := e.store.MembershipHistory(ctx, "data-analysts")
	if err != nil {
		t.Fatal(err)
	}
	var left int
	for _, m := range h {
		if !m.Left.IsZero() {
			left++
		}
		if m.Source != "scim:azure-ad" {
			t.Fatalf("membership source %q", m.Source)
		}
	}
	if len(h) != 3 || left != 2 {
		t.Fatalf("history: %+v", h)
	}

	e.do("DELETE", "/Groups/"+gid, nil).want(t, http.StatusNoContent)
	e.do("GET", "/Groups/"+gid, nil).want(t, http.StatusNotFound)
}

// wantMembers checks the members of a group, through SCIM and the store.
func wantMembers(t *testing.T, e *env, gid string, names ...string) {
	t.Helper()
	r := e.do("GET", "/Groups/"+gid, nil).want(t, http.StatusOK)
	list, _ := r.body["members"].([]any)
	var got []string
	for _, m := range list {
		got = append(got, m.(map[string]any)["display"].(string))
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("members = %v, want %v", got, names)
	}
	members, err := e.store.ListMembers(context.Background(), gid)
	if err != nil || len(members) != len(names) {
		t.Fatalf("store members = %v, %v", members, err)
	}
}

// Azure AD adds a work email that does not exist yet with a filtered path.
func TestAzureAddsEmailThroughFilteredPath(t *testing.T) {
	e := newEnv(t)
	id := e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "dee@contoso.com"}).want(t, http.StatusCreated).str("id")
	e.do("PATCH", "/Users/"+id, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "dee@contoso.com"}]}`).want(t, http.StatusOK)
	r := e.do("GET", "/Users/"+id, nil).want(t, http.StatusOK)
	emails, _ := r.body["emails"].([]any)
	if len(emails) != 1 || emails[0].(map[string]any)["type"] != "work" || emails[0].(map[string]any)["value"] != "dee@contoso.com" {
		t.Fatalf("emails = %v", r.body["emails"])
	}
	u, _ := e.store.GetUser(context.Background(), id)
	if u.Email != "dee@contoso.com" {
		t.Fatalf("store email %q", u.Email)
	}
}
