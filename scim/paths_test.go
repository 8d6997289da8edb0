package scim

import (
	"net/http"
	"strings"
	"testing"
)

// Endpoint names match in any case and with a trailing slash, as
// Microsoft's reference SCIM server and the clients written against it
// expect; resource ids keep their exact case, and resource locations their
// canonical spelling.

// location is the canonical location of the resource id at endpoint.
func (e *env) location(endpoint, id string) string {
	return "https://" + strings.TrimPrefix(e.srv.URL, "http://") + Prefix + endpoint + "/" + id
}

// wantLocation fails the test unless the resource's meta.location is the
// canonical one for endpoint and id.
func (e *env) wantLocation(r response, endpoint, id string) {
	e.t.Helper()
	if got, want := r.str("meta.location"), e.location(endpoint, id); got != want {
		e.t.Fatalf("meta.location %q, want %q", got, want)
	}
}

// wantNotFound fails the test unless r is a SCIM 404 error.
func wantNotFound(t *testing.T, r response) {
	t.Helper()
	r.want(t, http.StatusNotFound)
	if schemas, _ := r.body["schemas"].([]any); len(schemas) != 1 || schemas[0] != messageError || r.str("status") != "404" || r.str("detail") == "" {
		t.Fatalf("not a SCIM error body: %s", r.raw)
	}
}

func TestUserPathSpellings(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/users/", `{"schemas":["`+SchemaUser+`"],"userName":"alice@example.com"}`).want(t, http.StatusCreated)
	id := r.str("id")
	e.wantLocation(r, "/Users", id)
	if want := r.str("meta.location"); r.header.Get("Location") != want {
		t.Fatalf("Location %q, want %s", r.header.Get("Location"), want)
	}

	r = e.do("GET", "/users/?filter=userName%20eq%20%22alice@example.com%22", nil).want(t, http.StatusOK)
	if list := r.resources(); len(list) != 1 || list[0]["id"] != id || lookupPath(list[0], "meta.location") != e.location("/Users", id) {
		t.Fatalf("filtered list through /users/: %s", r.raw)
	}
	if r := e.do("GET", "/Users/", nil).want(t, http.StatusOK); len(r.resources()) != 1 {
		t.Fatalf("list through /Users/: %s", r.raw)
	}

	e.wantLocation(e.do("GET", "/USERS/"+id, nil).want(t, http.StatusOK), "/Users", id)
	e.wantLocation(e.do("GET", "/users/"+id+"/", nil).want(t, http.StatusOK), "/Users", id)
	r = e.do("PUT", "/uSeRs/"+id, `{"schemas":["`+SchemaUser+`"],"userName":"alice@example.com","displayName":"Alice"}`).want(t, http.StatusOK)
	if r.str("displayName") != "Alice" {
		t.Fatalf("PUT through /uSeRs: %s", r.raw)
	}
	e.wantLocation(r, "/Users", id)
	r = e.do("PATCH", "/users/"+id+"/", `{"schemas":["`+messagePatch+`"],"Operations":[{"op":"replace","path":"active","value":false}]}`).want(t, http.StatusOK)
	if r.body["active"] != false {
		t.Fatalf("PATCH through /users/: %s", r.raw)
	}
	e.wantLocation(r, "/Users", id)

	// Ids are opaque: another spelling of one is another id.
	wantNotFound(t, e.do("GET", "/users/"+strings.ToUpper(id), nil))

	e.do("DELETE", "/Users/"+id+"/", nil).want(t, http.StatusNoContent)
	wantNotFound(t, e.do("GET", "/users/"+id, nil))
}

func TestGroupPathSpellings(t *testing.T) {
	e := newEnv(t)
	user := e.do("POST", "/Users", `{"schemas":["`+SchemaUser+`"],"userName":"bob@example.com"}`).want(t, http.StatusCreated).str("id")
	r := e.do("POST", "/groups", `{"schemas":["`+SchemaGroup+`"],"displayName":"analysts"}`).want(t, http.StatusCreated)
	id := r.str("id")
	e.wantLocation(r, "/Groups", id)

	r = e.do("GET", "/GROUPS/?filter=displayName%20eq%20%22analysts%22", nil).want(t, http.StatusOK)
	if list := r.resources(); len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("filtered list through /GROUPS/: %s", r.raw)
	}
	e.wantLocation(e.do("GET", "/GROUPS/"+id, nil).want(t, http.StatusOK), "/Groups", id)
	e.do("PATCH", "/groups/"+id+"/", `{"schemas":["`+messagePatch+`"],"Operations":[{"op":"add","path":"members","value":[{"value":"`+user+`"}]}]}`).
		want(t, http.StatusOK)
	r = e.do("GET", "/Groups/"+id+"/", nil).want(t, http.StatusOK)
	if members, _ := r.body["members"].([]any); len(members) != 1 || lookupPath(members[0], "value") != user {
		t.Fatalf("members after PATCH through /groups/: %s", r.raw)
	}
	r = e.do("PUT", "/gRoUpS/"+id, `{"schemas":["`+SchemaGroup+`"],"displayName":"analysts-eu"}`).want(t, http.StatusOK)
	if r.str("displayName") != "analysts-eu" {
		t.Fatalf("PUT through /gRoUpS: %s", r.raw)
	}
	e.wantLocation(r, "/Groups", id)

	wantNotFound(t, e.do("GET", "/groups/"+strings.ToUpper(id), nil))

	e.do("DELETE", "/GROUPS/"+id, nil).want(t, http.StatusNoContent)
	wantNotFound(t, e.do("GET", "/Groups/"+id, nil))
}

func TestDiscoveryPathSpellings(t *testing.T) {
	e := newEnv(t)
	base := "https://" + strings.TrimPrefix(e.srv.URL, "http://") + Prefix
	for path, location := range map[string]string{
		"/serviceproviderconfig":                  "/ServiceProviderConfig",
		"/SERVICEPROVIDERCONFIG/":                 "/ServiceProviderConfig",
		"/schemas/" + strings.ToLower(SchemaUser): "/Schemas/" + SchemaUser,
		"/SCHEMAS/" + SchemaGroup + "/":           "/Schemas/" + SchemaGroup,
		"/resourcetypes/user":                     "/ResourceTypes/User",
		"/ResourceTypes/Group/":                   "/ResourceTypes/Group",
	} {
		if r := e.doAs("", "GET", path, nil).want(t, http.StatusOK); r.str("meta.location") != base+location {
			t.Errorf("%s: meta.location %q, want %s", path, r.str("meta.location"), base+location)
		}
	}
	for _, path := range []string{"/schemas", "/Schemas/", "/resourcetypes", "/RESOURCETYPES/"} {
		if r := e.doAs("", "GET", path, nil).want(t, http.StatusOK); len(r.resources()) == 0 {
			t.Errorf("%s lists nothing: %s", path, r.raw)
		}
	}
}

// Paths that name no endpoint still get the SCIM error body, whatever
// their spelling.
func TestUnknownPaths(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/", "/Userz", "/userz/", "/Users/a/b", "/Users/a/b/", "/Bulk", "/me/"} {
		t.Run(path, func(t *testing.T) { wantNotFound(t, e.do("GET", path, nil)) })
	}
}

// Only the endpoint name's case and one trailing slash are re-spelled;
// paths of other shapes, and paths outside Prefix, are left alone.
func TestCanonicalPath(t *testing.T) {
	for in, want := range map[string]string{
		Prefix + "/users":                 Prefix + "/Users",
		Prefix + "/Users/":                Prefix + "/Users",
		Prefix + "/GROUPS/AbC-1":          Prefix + "/Groups/AbC-1",
		Prefix + "/groups/AbC-1/":         Prefix + "/Groups/AbC-1",
		Prefix + "/users/a%2Fb":           Prefix + "/Users/a%2Fb",
		Prefix + "/schemas/urn:X:Y":       Prefix + "/Schemas/urn:X:Y",
		Prefix + "/":                      Prefix + "/",
		Prefix + "/Userz/":                Prefix + "/Userz/",
		Prefix + "/Users//":               Prefix + "/Users//",
		"/SCIM/V2/users":                  "/SCIM/V2/users",
		"/v1/whoami/":                     "/v1/whoami/",
		Prefix + "/Users/a/b/":            Prefix + "/Users/a/b/",
		Prefix + "/serviceProviderConfig": Prefix + "/ServiceProviderConfig",
	} {
		if got := canonicalPath(in); got != want {
			t.Errorf("canonicalPath(%q) = %q, want %q", in, got, want)
		}
	}
}
