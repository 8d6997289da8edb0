package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// public_url is the API's address as clients see it: it wins over the URL
// derived from listen.api, loses a trailing slash and an explicit :443 (a
// browser's Origin has neither), and becomes the base of the default SAML
// entity ID.
func TestPublicURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://keygate.example.com", "https://keygate.example.com"},
		{"https://keygate.example.com/", "https://keygate.example.com"},
		{"https://keygate.example.com:8443//", "https://keygate.example.com:8443"},
		{"https://[2001:db8::1]:443", "https://[2001:db8::1]"},
		{"https://keygate.example.com:443/", "https://keygate.example.com"},
		{"https://10.0.0.5", "https://10.0.0.5"},
	}
	for _, tt := range tests {
		c := mustParse(t, minimal+"listen: {api: '0.0.0.0:8443'}\npublic_url: "+tt.in+"\nsso:\n  saml:\n    idp_metadata_file: idp.xml\n")
		if c.PublicURL != tt.want || c.APIURL() != tt.want {
			t.Errorf("public_url %s: PublicURL %q, APIURL %q, want %q", tt.in, c.PublicURL, c.APIURL(), tt.want)
		}
		if got, want := c.SSO.SAML.EntityID, tt.want+"/saml/metadata"; got != want {
			t.Errorf("public_url %s: default entity ID %q, want %q", tt.in, got, want)
		}
	}
	// An entity ID that is set stays as written.
	c := mustParse(t, minimal+"public_url: https://keygate.example.com\nsso:\n  saml:\n    idp_metadata_file: idp.xml\n    entity_id: urn:keygate\n")
	if c.SSO.SAML.EntityID != "urn:keygate" {
		t.Errorf("entity_id set: %q", c.SSO.SAML.EntityID)
	}
}

// A public_url that cannot be the API's base URL is refused at its line,
// with what to write instead.
func TestPublicURLRefused(t *testing.T) {
	tests := []struct{ in, message string }{
		{"keygate.example.com", `public_url "keygate.example.com" is not an absolute URL: write it as https://HOST or https://HOST:PORT`},
		{"https://", `public_url "https://" is not an absolute URL`},
		{"https://:8443", `public_url "https://:8443" is not an absolute URL`},
		{"https://keygate.example.com:port", `public_url "https://keygate.example.com:port" is not an absolute URL`},
		{"https:keygate.example.com", `public_url "https:keygate.example.com" is not an absolute URL`},
		{"ftp://keygate.example.com", `public_url "ftp://keygate.example.com" is not an absolute URL`},
		{"http://keygate.example.com", `public_url "http://keygate.example.com" uses http: use https`},
		{"https://admin:secret@keygate.example.com", `public_url "https://admin:secret@keygate.example.com" holds a user name: remove it`},
		{"https://keygate.example.com?tenant=a", `public_url "https://keygate.example.com?tenant=a" has a query or fragment`},
		{"https://keygate.example.com/?", `public_url "https://keygate.example.com/?" has a query or fragment`},
		{"https://keygate.example.com/#top", `public_url "https://keygate.example.com/#top" has a query or fragment`},
		{"https://keygate.example.com/keygate/", `public_url "https://keygate.example.com/keygate" has a path: keygate serves its API, sign-in pages and SCIM at the root, ` +
			`so have the proxy map https://keygate.example.com/ to keygate's / and set public_url to https://keygate.example.com`},
		{"https://keygate.example.com:8443/kg", `public_url "https://keygate.example.com:8443/kg" has a path: keygate serves its API, sign-in pages and SCIM at the root, ` +
			`so have the proxy map https://keygate.example.com:8443/ to keygate's / and set public_url to https://keygate.example.com:8443`},
	}
	for _, tt := range tests {
		raw := minimal + "log: {level: info}\npublic_url: '" + tt.in + "'\n"
		msg := parseErr(t, raw)
		if want := testPath + ":3: " + tt.message; !strings.Contains(msg, want) {
			t.Errorf("public_url %s:\n  %q\nwant it to contain\n  %q", tt.in, msg, want)
		}
	}
}

// Admin commands read public_url through LoadLocation, and a malformed one
// stops them at its line instead of sending them nowhere.
func TestLoadLocationPublicURL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data_dir: ./data\npublic_url: https://keygate.example.com/\nassignments:\n  - group: analysts\n    permission_set: missing\n")
	c, err := LoadLocation(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://keygate.example.com" || c.APIURL() != "https://keygate.example.com" {
		t.Errorf("PublicURL %q, APIURL %q", c.PublicURL, c.APIURL())
	}
	write("data_dir: ./data\n\npublic_url: https://keygate.example.com/keygate\n")
	if _, err := LoadLocation(path); err == nil || !strings.Contains(err.Error(), path+`:3: public_url "https://keygate.example.com/keygate" has a path`) {
		t.Errorf("public_url with a path: %v", err)
	}
}
