package scim

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// With PublicURL set, resource locations and the Location header name it,
// whatever host the request came to; without it they name the request's
// host.
func TestLocationsUsePublicURL(t *testing.T) {
	const public = "https://keygate.example.com"
	e := newEnv(t)
	host := "https://" + strings.TrimPrefix(e.srv.URL, "http://")
	r := e.do("POST", "/Users", `{"schemas":["`+SchemaUser+`"],"userName":"alice@example.com"}`).want(t, http.StatusCreated)
	if want := host + Prefix + "/Users/" + r.str("id"); r.str("meta.location") != want || r.header.Get("Location") != want {
		t.Errorf("without PublicURL: meta.location %q, Location %q, want %s", r.str("meta.location"), r.header.Get("Location"), want)
	}

	srv := New(e.store, e.audit, slog.New(slog.DiscardHandler), nil)
	srv.PublicURL = public
	e.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(e.srv.Close)
	base := public + Prefix
	r = e.do("POST", "/Groups", `{"schemas":["`+SchemaGroup+`"],"displayName":"analysts"}`).want(t, http.StatusCreated)
	if want := base + "/Groups/" + r.str("id"); r.str("meta.location") != want || r.header.Get("Location") != want {
		t.Errorf("group: meta.location %q, Location %q, want %s", r.str("meta.location"), r.header.Get("Location"), want)
	}
	r = e.do("GET", "/Users?filter="+q(`userName eq "alice@example.com"`), nil).want(t, http.StatusOK)
	if list := r.resources(); len(list) != 1 || lookupPath(list[0], "meta.location") != base+"/Users/"+list[0]["id"].(string) {
		t.Errorf("listed user: %s", r.raw)
	}
	for path, want := range map[string]string{
		"/ServiceProviderConfig": base + "/ServiceProviderConfig",
		"/Schemas/" + SchemaUser: base + "/Schemas/" + SchemaUser,
		"/ResourceTypes/User":    base + "/ResourceTypes/User",
	} {
		if r := e.do("GET", path, nil).want(t, http.StatusOK); r.str("meta.location") != want {
			t.Errorf("%s: meta.location %q, want %s", path, r.str("meta.location"), want)
		}
	}
	if r := e.do("GET", "/ServiceProviderConfig", nil); r.str("documentationUri") != public+"/" {
		t.Errorf("documentationUri %q, want %s/", r.str("documentationUri"), public)
	}
}
