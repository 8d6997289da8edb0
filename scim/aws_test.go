package scim

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Tools written against AWS IAM Identity Center's SCIM endpoint (such as
// directory sync jobs) page with cursors, filter with eq and and on
// userName and externalId, and expect a 400 with a clear detail for a
// request it would answer with a ValidationException.

func TestAWSCursorPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 120 {
		e.now = e.now.Add(1)
		e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "sync" + strconv.Itoa(i) + "@example.com",
			"externalId": "ext-" + strconv.Itoa(i%7)}).want(t, http.StatusCreated)
	}
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		r := e.do("GET", "/Users?count=50&cursor="+cursor, nil).want(t, http.StatusOK)
		pages++
		for _, u := range r.resources() {
			id := u["id"].(string)
			if seen[id] {
				t.Fatalf("user %s twice", id)
			}
			seen[id] = true
		}
		if _, ok := r.body["startIndex"]; ok {
			t.Fatal("a cursor page carries startIndex")
		}
		next, _ := r.body["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 120 || pages != 3 {
		t.Fatalf("%d users in %d pages, want 120 in 3", len(seen), pages)
	}
	// Cursors combine with filters.
	r := e.do("GET", "/Users?count=10&cursor=&filter="+q(`externalId eq "ext-3"`), nil).want(t, http.StatusOK)
	if r.body["totalResults"] != float64(17) || len(r.resources()) != 10 || r.body["nextCursor"] == nil {
		t.Fatalf("filtered cursor page: total %v, %d resources, next %v", r.body["totalResults"], len(r.resources()), r.body["nextCursor"])
	}
}

func TestAWSEqualityFilters(t *testing.T) {
	e := newEnv(t)
	a := e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "jane@example.com", "externalId": "E-1"}).want(t, http.StatusCreated).str("id")
	e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "john@example.com", "externalId": "E-2"}).want(t, http.StatusCreated)
	for filter, want := range map[string]int{
		`userName eq "jane@example.com"`:                         1,
		`externalId eq "E-1"`:                                    1,
		`externalId eq "e-1"`:                                    0, // externalId is case-exact
		`userName eq "jane@example.com" and externalId eq "E-1"`: 1,
		`userName eq "jane@example.com" and externalId eq "E-2"`: 0,
		`id eq "` + a + `"`:                                      1,
		`userName eq "nobody@example.com"`:                       0,
	} {
		r := e.do("GET", "/Users?filter="+q(filter), nil).want(t, http.StatusOK)
		if r.body["totalResults"] != float64(want) {
			t.Errorf("%s: %v results, want %d", filter, r.body["totalResults"], want)
		}
	}
	gid := e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "Developers"}).want(t, http.StatusCreated).str("id")
	r := e.do("GET", "/Groups?filter="+q(`displayName eq "Developers"`), nil).want(t, http.StatusOK)
	if len(r.resources()) != 1 || r.resources()[0]["id"] != gid {
		t.Fatalf("group by displayName: %s", r.raw)
	}
}

// What an IAM Identity Center client would get a ValidationException for
// comes back as a SCIM error whose detail says what to fix.
func TestAWSValidationErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path, body string
		status             int
		scimType, detail   string
	}{
		{"POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "displayName": "No Name"}`, 400, invalidValue, "userName is required"},
		{"POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "has space@example.com"}`, 400, invalidValue, "whitespace"},
		{"POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@example.com", "active": "maybe"}`, 400, invalidValue, "active must be true or false"},
		{"GET", "/Users?filter=" + q(`userName sw`), "", 400, invalidFilter, "cannot parse filter"},
		{"GET", "/Users?count=abc", "", 400, invalidValue, "count must be a number"},
		{"GET", "/Users?cursor=!!!", "", 400, "invalidCursor", "not one keygate handed out"},
		{"POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}`, 400, invalidValue, "displayName is required"},
	} {
		r := e.do(tc.method, tc.path, tc.body).want(t, tc.status, tc.scimType)
		if !strings.Contains(r.str("detail"), tc.detail) || r.str("status") != strconv.Itoa(tc.status) {
			t.Errorf("%s %s: detail %q, status %q; want detail containing %q", tc.method, tc.path, r.str("detail"), r.str("status"), tc.detail)
		}
	}
}
