package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
)

// Commands that find the server through --config go to public_url when it
// is set, trusting the system's roots there as a proxy's certificate needs;
// keygate's own CA stays the default for keygate's own listener.
func TestEndpointFromPublicURL(t *testing.T) {
	dir := t.TempDir()
	keygateCA := filepath.Join(dir, "data", pki.CAFile)
	load := func(raw string) string {
		t.Helper()
		path := filepath.Join(dir, "keygate.yaml")
		if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const direct = "https://127.0.0.1:8443"
	behindProxy := load("data_dir: ./data\nlisten: {api: '127.0.0.1:8443'}\npublic_url: https://keygate.example.com/\n")
	cfg, err := config.LoadLocation(behindProxy)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		g              globals
		server, caFile string
	}{
		{"from the config", globals{}, "https://keygate.example.com", ""},
		{"--ca for the proxy", globals{ca: "/etc/ssl/proxy-ca.pem"}, "https://keygate.example.com", "/etc/ssl/proxy-ca.pem"},
		{"--server at the listener", globals{server: direct}, direct, keygateCA},
		{"--server at public_url", globals{server: "https://KEYGATE.example.com/"}, "https://KEYGATE.example.com/", ""},
	}
	for _, tt := range tests {
		server, caFile := tt.g.endpointFrom(cfg)
		if server != tt.server || caFile != tt.caFile {
			t.Errorf("%s: endpoint %q with CA %q, want %q with %q", tt.name, server, caFile, tt.server, tt.caFile)
		}
	}
	g := globals{configPath: behindProxy}
	if got := g.serverURL(); got != "https://keygate.example.com" {
		t.Errorf("the URL admin commands print (the SCIM Tenant URL) is %q, want public_url", got)
	}

	cfg, err = config.LoadLocation(load("data_dir: ./data\nlisten: {api: '127.0.0.1:8443'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if server, caFile := (&globals{}).endpointFrom(cfg); server != direct || caFile != keygateCA {
		t.Errorf("without public_url: endpoint %q with CA %q, want %q with %q", server, caFile, direct, keygateCA)
	}
}
