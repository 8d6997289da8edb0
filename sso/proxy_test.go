package sso_test

import (
	"net/http"
	"testing"

	"github.com/keygate/keygate/sso"
)

// Behind a reverse proxy that rewrites Host, the device page's form post
// names the proxy as its Origin while the request names keygate's
// listener: the post is keygate's own and starts sign-in. Other sites
// still cannot start one.
func TestDeviceStartBehindProxy(t *testing.T) {
	const proxy = "https://keygate.example.com"
	e := newEnv(t, func(o *sso.Options) { o.BaseURL = proxy })
	dc := e.deviceCode()
	if dc.VerificationURI != proxy+sso.PathDevice {
		t.Errorf("verification_uri %q, want it at %s", dc.VerificationURI, proxy)
	}
	r := startRequest(dc.UserCode, "saml")
	r.Header.Set("Origin", proxy)
	if rec := e.serve(r); rec.Code != http.StatusSeeOther {
		t.Fatalf("start from the proxy's page: %d %s", rec.Code, pageText(rec))
	}
	r = startRequest(dc.UserCode, "saml")
	r.Header.Set("Origin", "https://evil.example")
	wantPage(t, e.serve(r), http.StatusBadRequest, "Sign-in could not start")
}
