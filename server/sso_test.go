package server

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// providerClient trusts a private CA given in a file, and says what is
// wrong with a file that cannot be one.
func TestProviderClient(t *testing.T) {
	idp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metadata")) }))
	defer idp.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "idp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idp.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := providerClient("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Get(idp.URL); err == nil {
		t.Fatal("the system roots trusted the test provider's certificate")
	}
	c, err := providerClient(caFile)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(idp.URL)
	if err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	resp.Body.Close()

	if _, err := providerClient(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing ca_file was accepted")
	}
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	if _, err := providerClient(notPEM); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a ca_file without certificates: %v", err)
	}
}
