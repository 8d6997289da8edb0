package scim

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
)

// These check listing: every filter operator and form RFC 7644 §3.4.2.2
// gives, index paging, and the attributes and excludedAttributes
// projections.

// directory makes four people an hour apart, from t0, and two groups.
func directory(t *testing.T, e *env) (t0 time.Time, ids map[string]string) {
	t.Helper()
	t0 = e.now
	ids = map[string]string{}
	for i, body := range []string{
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		  "userName": "Alice@Example.com", "displayName": "Alice Archer", "title": "Engineer", "active": true, "externalId": "A-1",
		  "name": {"givenName": "Alice", "familyName": "Archer"},
		  "emails": [{"value": "alice@work.example", "type": "work", "primary": true}, {"value": "alice@home.example", "type": "home"}],
		  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance", "employeeNumber": "100"}}`,
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		  "userName": "bob@example.com", "displayName": "Bob Baker", "title": "Manager", "active": false, "externalId": "B-2",
		  "name": {"givenName": "Bob", "familyName": "Baker"},
		  "emails": [{"value": "bob@work.example", "type": "work", "primary": false}, {"value": "bob@home.example", "type": "home", "primary": true}],
		  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering", "employeeNumber": "200"}}`,
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		  "userName": "carol@example.org", "displayName": "Carol Carter", "active": true,
		  "name": {"givenName": "Carol", "familyName": "Carter"},
		  "emails": [{"value": "carol@work.example", "type": "work", "primary": true}],
		  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "FINANCE"}}`,
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
		  "userName": "dave@example.net", "displayName": "Dave Dunn", "title": "engineer", "active": true}`,
	} {
		e.now = t0.Add(time.Duration(i) * time.Hour)
		r := e.do("POST", "/Users", body).want(t, http.StatusCreated)
		ids[strings.ToLower(strings.SplitN(r.str("userName"), "@", 2)[0])] = r.str("id")
	}
	e.now = t0.Add(4 * time.Hour)
	ids["finance"] = e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "Finance Team",
		"members": []any{map[string]any{"value": ids["alice"]}, map[string]any{"value": ids["carol"]}}}).want(t, http.StatusCreated).str("id")
	e.now = t0.Add(5 * time.Hour)
	ids["engineering"] = e.do("POST", "/Groups", map[string]any{"schemas": []string{SchemaGroup}, "displayName": "Engineering",
		"members": []any{map[string]any{"value": ids["bob"]}}}).want(t, http.StatusCreated).str("id")
	return t0, ids
}

// names lists the first word of each resource's userName (or
// displayName), in listing order.
func names(r response) []string {
	var out []string
	for _, res := range r.resources() {
		n, _ := res["userName"].(string)
		if n == "" {
			n, _ = res["displayName"].(string)
		}
		out = append(out, strings.ToLower(strings.FieldsFunc(n, func(r rune) bool { return r == '@' || r == ' ' })[0]))
	}
	return out
}

// Each operator, logical form, value path and name spelling selects
// exactly the expected users.
func TestUserFilters(t *testing.T) {
	e := newEnv(t)
	t0, ids := directory(t, e)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		filter string
		want   string // space-separated, in creation order
	}{
		// eq, on a caseExact=false attribute, through the index and not.
		{`userName eq "alice@example.com"`, "alice"},
		{`userName eq "ALICE@EXAMPLE.COM"`, "alice"},
		{`USERNAME eq "Alice@Example.com"`, "alice"},
		{`username Eq "alice@example.com"`, "alice"},
		{`userName eq "alice"`, ""},
		{`title eq "ENGINEER"`, "alice dave"},
		{`displayName eq "bob baker"`, "bob"},
		// externalId and id are caseExact.
		{`externalId eq "A-1"`, "alice"},
		{`externalId eq "a-1"`, ""},
		{`id eq "` + ids["carol"] + `"`, "carol"},
		{`id eq "` + strings.ToUpper(ids["carol"]) + `"`, ""},
		// ne is not eq: people without the attribute are "not equal".
		{`userName ne "alice@example.com"`, "bob carol dave"},
		{`title ne "engineer"`, "bob carol"},
		// co, sw, ew, case-insensitively.
		{`userName co "EXAMPLE.C"`, "alice bob"},
		{`userName sw "CA"`, "carol"},
		{`userName ew ".NET"`, "dave"},
		{`displayName co "ar"`, "alice carol"},
		{`externalId sw "a"`, ""},
		// pr, and absence.
		{`title pr`, "alice bob dave"},
		{`externalId pr`, "alice bob"},
		{`emails pr`, "alice bob carol"},
		// gt ge lt le on strings, case-insensitively.
		{`userName gt "BOB@example.com"`, "carol dave"},
		{`userName ge "bob@example.com"`, "bob carol dave"},
		{`userName lt "Bob@Example.com"`, "alice"},
		{`userName le "bob@example.com"`, "alice bob"},
		// Date-times compare as times, not strings.
		{`meta.lastModified gt "` + at(30*time.Minute) + `"`, "bob carol dave"},
		{`meta.lastModified lt "` + at(90*time.Minute) + `"`, "alice bob"},
		{`meta.lastModified ge "` + at(time.Hour) + `"`, "bob carol dave"},
		{`meta.lastModified le "` + at(time.Hour) + `"`, "alice bob"},
		{`meta.created eq "` + at(2*time.Hour) + `"`, "carol"},
		{`meta.created ge "` + t0.Add(2*time.Hour).In(time.FixedZone("", 3600)).Format(time.RFC3339) + `"`, "carol dave"},
		{`meta.lastModified gt "` + at(30*time.Minute) + `" and meta.lastModified lt "` + at(150*time.Minute) + `"`, "bob carol"},
		// Booleans.
		{`active eq true`, "alice carol dave"},
		{`active eq false`, "bob"},
		// and, or, not, and grouping, which changes the answer.
		{`title eq "engineer" and active eq true`, "alice dave"},
		{`title eq "manager" or userName sw "carol"`, "bob carol"},
		{`not (title pr)`, "carol"},
		{`not (userName eq "alice@example.com") and not (userName eq "dave@example.net")`, "bob carol"},
		{`userName sw "alice" or userName sw "bob" and active eq false`, "alice bob"},
		{`(userName sw "alice" or userName sw "bob") and active eq false`, "bob"},
		{`userName sw "alice" or (userName sw "bob" and active eq true)`, "alice"},
		{`userName eq "alice@example.com" and title eq "manager"`, ""},
		{`userName eq "alice@example.com" or externalId eq "B-2"`, "alice bob"},
		{`externalId eq "B-2" or userName eq "carol@example.org"`, "bob carol"},
		// Value paths and sub-attributes of multi-valued attributes.
		{`emails[type eq "work" and primary eq true]`, "alice carol"},
		{`emails[type eq "home"]`, "alice bob"},
		{`emails[type eq "home" and primary eq true]`, "bob"},
		{`emails[type eq "work" or primary eq true]`, "alice bob carol"},
		{`emails[not (type eq "work")]`, "alice bob"},
		{`emails[value ew "@work.example"] and active eq true`, "alice carol"},
		{`emails.value sw "bob@"`, "bob"},
		{`emails.type eq "home"`, "alice bob"},
		{`emails co "carol@"`, "carol"},
		{`name.givenName eq "CAROL"`, "carol"},
		{`name.familyName lt "b"`, "alice"},
		// Fully qualified names, core and extension.
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "carol@example.org"`, "carol"},
		{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "a"`, "alice"},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "finance"`, "alice carol"},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department ne "Finance"`, "bob dave"},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber pr`, "alice bob"},
		{`URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT eq "Engineering"`, "bob"},
		// Escaped quotes in a literal.
		{`displayName eq "Bob \"the\" Baker"`, ""},
	} {
		r := e.do("GET", "/Users?filter="+q(tc.filter), nil)
		if r.status != http.StatusOK {
			t.Errorf("%s: %d %s", tc.filter, r.status, r.raw)
			continue
		}
		got := strings.Join(names(r), " ")
		if got != tc.want {
			t.Errorf("%s: got [%s], want [%s]", tc.filter, got, tc.want)
		}
		if r.body["totalResults"] != float64(len(strings.Fields(tc.want))) {
			t.Errorf("%s: totalResults %v for [%s]", tc.filter, r.body["totalResults"], got)
		}
	}
}

// Group filters: by name, through the index and not, and by member.
func TestGroupFilters(t *testing.T) {
	e := newEnv(t)
	_, ids := directory(t, e)
	for _, tc := range []struct{ filter, want string }{
		{`displayName eq "FINANCE TEAM"`, "finance"},
		{`displayName sw "eng"`, "engineering"},
		{`displayName co "a"`, "finance"},
		{`displayName ne "Engineering"`, "finance"},
		{`members.value eq "` + ids["bob"] + `"`, "engineering"},
		{`members[value eq "` + ids["carol"] + `"]`, "finance"},
		{`members eq "` + ids["alice"] + `"`, "finance"},
		{`members.display sw "carol"`, "finance"},
		{`members pr`, "finance engineering"},
		{`not (members pr)`, ""},
		{`id eq "` + ids["engineering"] + `"`, "engineering"},
		{`urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "engineering"`, "engineering"},
		{`meta.created gt "` + e.now.Add(-30*time.Minute).Format(time.RFC3339) + `"`, "engineering"},
	} {
		r := e.do("GET", "/Groups?filter="+q(tc.filter), nil)
		if r.status != http.StatusOK {
			t.Errorf("%s: %d %s", tc.filter, r.status, r.raw)
			continue
		}
		if got := strings.Join(names(r), " "); got != tc.want {
			t.Errorf("%s: got [%s], want [%s]", tc.filter, got, tc.want)
		}
	}
}

// A filter that names something the resource does not have, or that does
// not parse, is 400 invalidFilter, even when no resource would be tested.
func TestBadFilters(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		endpoint, filter, detail string
	}{
		{"/Users", `nickname2 eq "x"`, `unknown attribute "nickname2"`},
		{"/Users", `userName eq "x" and bogus pr`, `unknown attribute "bogus"`},
		{"/Users", `bogus pr or userName eq "x"`, `unknown attribute "bogus"`},
		{"/Users", `not (bogus pr)`, `unknown attribute "bogus"`},
		{"/Users", `name.nickname eq "x"`, `unknown attribute`},
		{"/Users", `emails[kind eq "work"]`, `unknown attribute "kind"`},
		{"/Users", `emails.kind eq "work"`, `unknown attribute`},
		{"/Users", `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:level eq "x"`, `unknown attribute`},
		{"/Users", `urn:example:ext:2.0:User:level eq "x"`, `unknown schema`},
		{"/Users", `displayName eq "x" and members pr`, `unknown attribute "members"`},
		{"/Users", `name eq "x"`, "is complex"},
		{"/Users", `userName[value eq "x"]`, "not a complex attribute"},
		{"/Users", `active gt true`, "is a boolean"},
		{"/Users", `active eq "yes"`, "is a boolean"},
		{"/Users", `meta.lastModified gt "yesterday"`, "RFC 3339"},
		{"/Users", `meta.created co "2026-06-01T09:00:00Z"`, "does not apply"},
		{"/Users", `userName eq 5`, "quoted string"},
		{"/Users", `userName gt null`, "only eq compares with null"},
		{"/Users", `userName eq`, "cannot parse filter"},
		{"/Users", `userName "x"`, "cannot parse filter"},
		{"/Users", `userName xx "x"`, "cannot parse filter"},
		{"/Users", `(userName eq "x"`, "cannot parse filter"},
		{"/Users", `userName eq "x" and`, "cannot parse filter"},
		{"/Users", `userName eq "x" xor title pr`, "cannot parse filter"},
		{"/Users", `emails[type eq "work"`, "cannot parse filter"},
		{"/Users", `userName eq "unterminated`, "cannot parse filter"},
		{"/Users", strings.Repeat(`userName eq "x" or `, 300) + `title pr`, "longer than 4096 bytes"},
		{"/Groups", `userName eq "x"`, `unknown attribute "userName"`},
		{"/Groups", `members.bogus eq "x"`, `unknown attribute`},
		{"/Groups", `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"`, `unknown schema`},
		{"/Groups", `displayName eq`, "cannot parse filter"},
	} {
		r := e.do("GET", tc.endpoint+"?filter="+q(tc.filter), nil)
		if r.status != http.StatusBadRequest || r.body["scimType"] != invalidFilter || !isSCIMError(r, http.StatusBadRequest) {
			t.Errorf("%s %s: %d %s, want 400 invalidFilter", tc.endpoint, tc.filter, r.status, r.raw)
			continue
		}
		if !strings.Contains(r.str("detail"), tc.detail) {
			t.Errorf("%s %s: detail %q does not say %q", tc.endpoint, tc.filter, r.str("detail"), tc.detail)
		}
	}
	// The same, with people to test the filter on.
	directory(t, e)
	for _, f := range []string{`nickname2 eq "x"`, `userName eq "alice@example.com" and bogus pr`, `emails[kind eq "work"]`} {
		e.do("GET", "/Users?filter="+q(f), nil).want(t, http.StatusBadRequest, invalidFilter)
	}
}

// Index paging returns the listing in a stable order, a page at a time,
// with integer counts; out-of-range parameters are clamped.
func TestIndexPaging(t *testing.T) {
	e := newEnv(t)
	var all []string
	for i := range 7 {
		// Created in one instant: the order falls back to the id.
		id := e.do("POST", "/Users", map[string]any{"schemas": []string{SchemaUser}, "userName": "p" + strconv.Itoa(i) + "@example.com"}).want(t, http.StatusCreated).str("id")
		all = append(all, id)
	}
	slices.Sort(all)
	page := func(query string) ([]string, response) {
		r := e.do("GET", "/Users?"+query, nil).want(t, http.StatusOK)
		var got []string
		for _, res := range r.resources() {
			got = append(got, res["id"].(string))
		}
		return got, r
	}
	full, _ := page("")
	if !slices.Equal(full, all) {
		t.Fatalf("unpaged listing is not in (created, id) order:\n%v\n%v", full, all)
	}
	for _, tc := range []struct {
		query            string
		from, to         int // the slice of all expected
		startIndex, size int
	}{
		{"startIndex=1&count=3", 0, 3, 1, 3},
		{"startIndex=4&count=3", 3, 6, 4, 3},
		{"startIndex=7&count=3", 6, 7, 7, 1},
		{"startIndex=8&count=3", 7, 7, 8, 0},
		{"startIndex=100", 7, 7, 100, 0},
		{"count=2", 0, 2, 1, 2},
		{"startIndex=3", 2, 7, 3, 5},
		{"startIndex=0&count=2", 0, 2, 1, 2},
		{"startIndex=-5&count=2", 0, 2, 1, 2},
		{"startIndex=2&count=0", 0, 0, 2, 0},
		{"count=0", 0, 0, 1, 0},
		{"count=-4", 0, 0, 1, 0},
	} {
		got, r := page(tc.query)
		if !slices.Equal(got, all[tc.from:tc.to]) {
			t.Errorf("%s: got %v, want %v", tc.query, got, all[tc.from:tc.to])
		}
		// RFC 7644 §3.4.2: the counts are JSON integers.
		for k, want := range map[string]int{"totalResults": 7, "itemsPerPage": tc.size, "startIndex": tc.startIndex} {
			if !strings.Contains(r.raw, fmt.Sprintf(`"%s":%d`, k, want)) {
				t.Errorf("%s: %s is not the integer %d: %s", tc.query, k, want, r.raw)
			}
		}
		if _, ok := r.body["Resources"].([]any); !ok {
			t.Errorf("%s: Resources is not a list: %s", tc.query, r.raw)
		}
		if schemas, _ := r.body["schemas"].([]any); len(schemas) != 1 || schemas[0] != messageList {
			t.Errorf("%s: schemas %v", tc.query, r.body["schemas"])
		}
	}
	// Pages, read one by one, make up the whole listing, with a filter too.
	var paged []string
	for start := 1; start <= 7; start += 2 {
		got, _ := page("count=2&startIndex=" + strconv.Itoa(start))
		paged = append(paged, got...)
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages %v, want %v", paged, all)
	}
	got, r := page("count=2&startIndex=2&filter=" + q(`userName sw "p"`))
	if !slices.Equal(got, all[1:3]) || r.body["totalResults"] != float64(7) {
		t.Fatalf("filtered page: %v (total %v), want %v", got, r.body["totalResults"], all[1:3])
	}
	for _, bad := range []string{"startIndex=abc", "startIndex=1.5", "count=1e3"} {
		r := e.do("GET", "/Users?"+bad, nil).want(t, http.StatusBadRequest, invalidValue)
		if !strings.Contains(r.str("detail"), "must be a number") {
			t.Errorf("%s: detail %q", bad, r.str("detail"))
		}
	}
}

// A count above the maximum is capped at it, and the maximum is what
// ServiceProviderConfig advertises; without count, a page is the default
// size.
func TestPageSizeCap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range maxPageSize + 5 {
		if _, err := e.store.CreateUser(ctx, identity.User{UserName: "u" + strconv.Itoa(i), Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	spc := e.do("GET", "/ServiceProviderConfig", nil).want(t, http.StatusOK)
	maxResults := spc.body["filter"].(map[string]any)["maxResults"]
	maxPage := spc.body["pagination"].(map[string]any)["maxPageSize"]
	if maxResults != float64(maxPageSize) || maxPage != float64(maxPageSize) {
		t.Fatalf("ServiceProviderConfig advertises maxResults %v, maxPageSize %v; the cap is %d", maxResults, maxPage, maxPageSize)
	}
	for query, want := range map[string]int{
		"count=5000":                         maxPageSize,
		"count=" + strconv.Itoa(maxPageSize): maxPageSize,
		"count=2147483647":                   maxPageSize,
		"":                                   defaultPageSize,
		"count=5000&startIndex=1001":         5,
		"count=5000&filter=" + q(`userName sw "u"`): maxPageSize,
	} {
		r := e.do("GET", "/Users?"+query, nil).want(t, http.StatusOK)
		if len(r.resources()) != want || r.body["itemsPerPage"] != float64(want) || r.body["totalResults"] != float64(maxPageSize+5) {
			t.Errorf("%q: %d resources, itemsPerPage %v, totalResults %v; want %d of %d", query, len(r.resources()), r.body["itemsPerPage"], r.body["totalResults"], want, maxPageSize+5)
		}
	}
}

// attributes= returns only the attributes named, plus id and schemas;
// excludedAttributes= returns all but those named, and never drops id or
// schemas; both work on one resource and on listings.
func TestUserProjection(t *testing.T) {
	e := newEnv(t)
	_, ids := directory(t, e)
	alice := "/Users/" + ids["alice"]
	keys := func(m map[string]any) string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		query, keys string
		check       func(r map[string]any) bool
	}{
		{"attributes=userName", "id schemas userName", nil},
		{"attributes=USERNAME", "id schemas userName", nil},
		{"attributes=userName,active", "active id schemas userName", func(r map[string]any) bool { return r["active"] == true }},
		{"attributes=urn:ietf:params:scim:schemas:core:2.0:User:displayName", "displayName id schemas", nil},
		{"attributes=name.givenName", "id name schemas", func(r map[string]any) bool {
			return jsonText(r["name"]) == `{"givenName":"Alice"}`
		}},
		{"attributes=emails.value", "emails id schemas", func(r map[string]any) bool {
			return jsonText(r["emails"]) == `[{"value":"alice@work.example"},{"value":"alice@home.example"}]`
		}},
		{"attributes=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "id schemas " + SchemaEnterprise, func(r map[string]any) bool {
			return jsonText(r[SchemaEnterprise]) == `{"department":"Finance"}`
		}},
		{"attributes=groups", "groups id schemas", func(r map[string]any) bool {
			g, _ := r["groups"].([]any)
			return len(g) == 1 && g[0].(map[string]any)["display"] == "Finance Team"
		}},
		{"attributes=nosuch", "id schemas", nil},
		{"excludedAttributes=emails,name,meta", "", func(r map[string]any) bool {
			return r["emails"] == nil && r["name"] == nil && r["meta"] == nil && r["userName"] != nil && r["title"] != nil
		}},
		{"excludedAttributes=id,schemas", "", func(r map[string]any) bool { return r["id"] != nil && r["schemas"] != nil }},
		{"excludedAttributes=emails.type", "", func(r map[string]any) bool {
			return jsonText(r["emails"]) == `[{"primary":true,"value":"alice@work.example"},{"value":"alice@home.example"}]`
		}},
		{"excludedAttributes=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "", func(r map[string]any) bool {
			return jsonText(r[SchemaEnterprise]) == `{"employeeNumber":"100"}`
		}},
	} {
		one := e.do("GET", alice+"?"+tc.query, nil).want(t, http.StatusOK)
		list := e.do("GET", "/Users?filter="+q(`userName eq "alice@example.com"`)+"&"+tc.query, nil).want(t, http.StatusOK)
		if len(list.resources()) != 1 {
			t.Fatalf("%s: listing %s", tc.query, list.raw)
		}
		for where, r := range map[string]map[string]any{"GET": one.body, "list": list.resources()[0]} {
			if r["id"] != ids["alice"] || r["schemas"] == nil {
				t.Errorf("%s %s: no id or schemas: %v", where, tc.query, r)
			}
			if tc.keys != "" && keys(r) != tc.keys {
				t.Errorf("%s %s: attributes [%s], want [%s]", where, tc.query, keys(r), tc.keys)
			}
			if tc.check != nil && !tc.check(r) {
				t.Errorf("%s %s: %s", where, tc.query, jsonText(r))
			}
		}
	}
	// A projection of a whole listing applies to every resource.
	r := e.do("GET", "/Users?attributes=userName", nil).want(t, http.StatusOK)
	for _, res := range r.resources() {
		if keys(res) != "id schemas userName" {
			t.Errorf("listing with attributes=userName: %v", res)
		}
	}
}

// Groups: excludedAttributes=members omits members (and attributes=
// without members too) on one group, listings and write responses;
// without it members are returned.
func TestGroupProjection(t *testing.T) {
	e := newEnv(t)
	_, ids := directory(t, e)
	path := "/Groups/" + ids["finance"]
	members := func(r map[string]any) (int, bool) {
		m, ok := r["members"].([]any)
		return len(m), ok
	}
	if n, ok := members(e.do("GET", path, nil).want(t, http.StatusOK).body); !ok || n != 2 {
		t.Fatalf("GET group: %d members (present %v), want 2", n, ok)
	}
	r := e.do("GET", "/Groups", nil).want(t, http.StatusOK)
	for _, g := range r.resources() {
		if _, ok := members(g); !ok {
			t.Fatalf("listing without excludedAttributes has no members: %v", g)
		}
	}
	for _, query := range []string{"excludedAttributes=members", "excludedAttributes=MEMBERS", "excludedAttributes=displayName,members", "attributes=displayName", "attributes=externalId"} {
		if _, ok := members(e.do("GET", path+"?"+query, nil).want(t, http.StatusOK).body); ok {
			t.Errorf("GET ?%s returned members", query)
		}
		r := e.do("GET", "/Groups?"+query, nil).want(t, http.StatusOK)
		if len(r.resources()) != 2 || r.body["totalResults"] != float64(2) {
			t.Errorf("list ?%s: %s", query, r.raw)
		}
		for _, g := range r.resources() {
			if _, ok := members(g); ok || g["id"] == nil || g["schemas"] == nil {
				t.Errorf("list ?%s: %v", query, g)
			}
		}
	}
	if d := e.do("GET", path+"?attributes=displayName", nil).body; d["displayName"] != "Finance Team" || d["meta"] != nil {
		t.Errorf("attributes=displayName: %v", d)
	}
	if d := e.do("GET", path+"?excludedAttributes=members", nil).body; d["displayName"] != "Finance Team" || d["meta"] == nil {
		t.Errorf("excludedAttributes=members dropped more: %v", d)
	}
	// A write answered without members still changes them.
	r = e.do("PATCH", path+"?excludedAttributes=members", patchBody(`{"op": "add", "path": "members", "value": [{"value": "`+ids["dave"]+`"}]}`)).want(t, http.StatusOK)
	if _, ok := members(r.body); ok {
		t.Errorf("PATCH ?excludedAttributes=members answered with members: %s", r.raw)
	}
	if n, _ := members(e.do("GET", path, nil).body); n != 3 {
		t.Errorf("after PATCH: %d members, want 3", n)
	}
}
