package server

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/testidp"
	"github.com/keygate/keygate/sso"
)

// proxyURL is where the tests' reverse proxy would serve keygate.
const proxyURL = "https://keygate.example.com"

// Behind a reverse proxy, everything keygate tells browsers, identity
// providers and the CLI names public_url, not the listener the request
// came in on: the SAML entity ID and ACS URL, the OIDC redirect URL, the
// device link keygate login prints, and SCIM resource locations. The
// requests here reach the listener directly with its own Host, as they do
// through a proxy that rewrites Host.
func TestPublicURLNamesTheProxy(t *testing.T) {
	dir := t.TempDir()
	writeIdPMetadata(t, filepath.Join(dir, "idp.xml"), time.Now().Add(365*24*time.Hour))
	op := testidp.StartOIDC(t, testidp.OIDCOptions{Clients: []testidp.OIDCClient{{ID: "keygate", RedirectURIs: []string{proxyURL + sso.PathOIDCCallback}}}})
	if err := os.WriteFile(filepath.Join(dir, "op.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: op.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf(`data_dir: %s
public_url: %s/
listen:
  api: 127.0.0.1:0
  postgres: 127.0.0.1:0
shutdown_grace: 1s
sso:
  saml:
    idp_metadata_file: idp.xml
  oidc:
    issuer: %s
    ca_file: op.pem
    client_id: keygate
`, filepath.Join(dir, "data"), proxyURL, op.Issuer)
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, cfg)
	api := apiClient(t, srv)
	direct := "https://" + srv.APIAddr()

	t.Run("saml metadata", func(t *testing.T) {
		body := readAll(t, get(t, api, direct+sso.PathSAMLMetadata))
		for _, want := range []string{`entityID="` + proxyURL + `/saml/metadata"`, `Location="` + proxyURL + `/saml/acs"`} {
			if !strings.Contains(body, want) {
				t.Errorf("metadata lacks %s:\n%s", want, body)
			}
		}
	})

	var dc sso.DeviceCodeResponse
	t.Run("device link", func(t *testing.T) {
		resp, err := api.PostForm(direct+sso.PathDeviceCode, url.Values{"client_name": {"laptop"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(readAll(t, resp)), &dc); err != nil {
			t.Fatal(err)
		}
		if dc.VerificationURI != proxyURL+sso.PathDevice || dc.VerificationURIComplete != proxyURL+sso.PathDevice+"?user_code="+dc.UserCode {
			t.Errorf("verification_uri %q, verification_uri_complete %q: want them at %s", dc.VerificationURI, dc.VerificationURIComplete, proxyURL)
		}
	})

	// The device page's form post comes from the page at public_url, with
	// that Origin, while the Host is the listener's.
	start := func(t *testing.T, method string) *url.URL {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, direct+sso.PathDeviceStart, strings.NewReader(url.Values{"user_code": {dc.UserCode}, "method": {method}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", proxyURL)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("start %s from %s: %s %s", method, proxyURL, resp.Status, body)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	t.Run("saml request", func(t *testing.T) {
		req := inflate(t, start(t, "saml").Query().Get("SAMLRequest"))
		for _, want := range []string{`AssertionConsumerServiceURL="` + proxyURL + `/saml/acs"`, `>` + proxyURL + `/saml/metadata</`} {
			if !strings.Contains(req, want) {
				t.Errorf("AuthnRequest lacks %s:\n%s", want, req)
			}
		}
	})
	t.Run("oidc redirect", func(t *testing.T) {
		if got := start(t, "oidc").Query().Get("redirect_uri"); got != proxyURL+sso.PathOIDCCallback {
			t.Errorf("redirect_uri %q, want %s", got, proxyURL+sso.PathOIDCCallback)
		}
	})

	t.Run("scim locations", func(t *testing.T) {
		secret := credential.New(credential.ProvisioningPrefix)
		h := credential.Hash(secret)
		if _, err := srv.store.CreateProvisioningToken(context.Background(), identity.ProvisioningToken{Name: "azure-ad"}, h[:]); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, direct+"/scim/v2/Users", strings.NewReader(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice@example.com"}`))
		req.Header.Set("Content-Type", "application/scim+json")
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var user struct {
			ID   string `json:"id"`
			Meta struct {
				Location string `json:"location"`
			} `json:"meta"`
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create user: %s %s", resp.Status, body)
		}
		if err := json.Unmarshal([]byte(body), &user); err != nil {
			t.Fatal(err)
		}
		want := proxyURL + "/scim/v2/Users/" + user.ID
		if user.Meta.Location != want || resp.Header.Get("Location") != want {
			t.Errorf("meta.location %q, Location %q, want %s", user.Meta.Location, resp.Header.Get("Location"), want)
		}
		if body := readAll(t, get(t, api, direct+"/scim/v2/ServiceProviderConfig")); !strings.Contains(body, `"location":"`+proxyURL+`/scim/v2/ServiceProviderConfig"`) {
			t.Errorf("ServiceProviderConfig location is not at %s: %s", proxyURL, body)
		}
	})
}

// A changed public_url takes a restart: sign-in and SCIM were built with
// the old one.
func TestReloadNamesPublicURL(t *testing.T) {
	parse := func(extra string) *config.Config {
		t.Helper()
		c, err := config.Parse("/etc/keygate/keygate.yaml", []byte("data_dir: /var/lib/keygate\n"+extra))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct{ running, next string }{
		{"", "public_url: https://keygate.example.com\n"},
		{"public_url: https://keygate.example.com\n", "public_url: https://kg.example.com\n"},
		{"public_url: https://keygate.example.com\n", ""},
	} {
		if got := needsRestart(parse(tt.running), parse(tt.next)); !slices.Equal(got, []string{"public_url"}) {
			t.Errorf("%q to %q: restart needed for %v, want [public_url]", tt.running, tt.next, got)
		}
	}
	if got := needsRestart(parse("public_url: https://keygate.example.com\n"), parse("public_url: https://keygate.example.com/\n")); len(got) != 0 {
		t.Errorf("a trailing slash added: restart needed for %v", got)
	}
}

// apiClient reaches srv's API trusting its CA, without following
// redirects.
func apiClient(t *testing.T, srv *Server) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", u, resp.Status, readAll(t, resp))
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// inflate decodes a SAML request sent with the HTTP-Redirect binding.
func inflate(t *testing.T, samlRequest string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(samlRequest)
	if err != nil {
		t.Fatalf("SAMLRequest %q: %v", samlRequest, err)
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("inflate SAMLRequest: %v", err)
	}
	return string(b)
}
