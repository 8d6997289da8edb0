package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keygate admin picks its credential: --config names the server's admin
// credential in data_dir; without it, the person's own session.
func TestAdminClientCredential(t *testing.T) {
	for _, k := range []string{"KEYGATE_CONFIG", "KEYGATE_SESSION", "KEYGATE_PROFILE", "KEYGATE_SERVER", "KEYGATE_CA"} {
		t.Setenv(k, "")
	}
	t.Setenv("KEYGATE_CONFIG_DIR", t.TempDir())

	_, err := (&globals{}).adminClient()
	if err == nil || !strings.Contains(err.Error(), "not signed in (profile default): run keygate login, or pass --config FILE (the server's config) to use the server's admin credential") {
		t.Errorf("neither signed in nor --config: %v", err)
	}

	t.Setenv("KEYGATE_SESSION", "kgs_automation")
	if _, err := (&globals{}).adminClient(); err == nil || !strings.Contains(err.Error(), "no keygate server: pass --server") {
		t.Errorf("KEYGATE_SESSION without a server: %v", err)
	}
	c, err := (&globals{server: "https://keygate.example.com:8443"}).adminClient()
	if err != nil || c.Server() != "https://keygate.example.com:8443" {
		t.Errorf("KEYGATE_SESSION with --server: %v", err)
	}

	// --config wins over a session: the data_dir credential, at the
	// config's public_url.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: ./data\npublic_url: https://keygate.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &globals{configPath: cfg, ca: filepath.Join(dir, "missing-ca.pem")}
	if _, err := g.adminClient(); err == nil || !strings.Contains(err.Error(), "read admin credential") {
		t.Errorf("--config without data_dir's credential: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "admin.credential"), []byte("kga_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.ca = ""
	if c, err := g.adminClient(); err != nil || c.Server() != "https://keygate.example.com" {
		t.Errorf("--config: %v", err)
	}
}
