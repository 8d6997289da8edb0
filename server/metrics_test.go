package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	crewjam "github.com/crewjam/saml"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/metrics/metricstest"
)

// writeIdPMetadata writes identity provider metadata, made by crewjam/saml,
// whose signing certificate expires at notAfter.
func writeIdPMetadata(t *testing.T, path string, notAfter time.Time) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://idp.test/metadata")
	sso, _ := url.Parse("https://idp.test/sso")
	raw, err := xml.Marshal((&crewjam.IdentityProvider{Key: key, Certificate: cert, MetadataURL: *u, SSOURL: *sso}).Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// With listen.metrics set, the server serves /metrics there over plain
// HTTP: the gateway's sessions, the SAML provider's state, and every audit
// event the server's parts record, counted by type. The API does not serve
// them.
func TestServerServesMetrics(t *testing.T) {
	dir := t.TempDir()
	writeIdPMetadata(t, filepath.Join(dir, "idp.xml"), time.Now().Add(5*24*time.Hour))
	raw := fmt.Sprintf(`data_dir: %s
listen:
  api: 127.0.0.1:0
  postgres: 127.0.0.1:0
  metrics: 127.0.0.1:0
shutdown_grace: 1s
sso:
  saml:
    idp_metadata_file: idp.xml
`, filepath.Join(dir, "data"))
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, cfg)
	if srv.MetricsAddr() == "" {
		t.Fatal("MetricsAddr is empty with listen.metrics set")
	}

	ca, err := os.ReadFile(srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	api := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+srv.APIAddr()+"/scim/v2/Users", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err := api.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SCIM with a bad token: %s", resp.Status)
	}

	m := scrapeURL(t, "http://"+srv.MetricsAddr()+"/metrics")
	for series, want := range map[string]float64{
		`keygate_audit_events_total{type="scim.auth.refused"}`: 1,
		`keygate_audit_events_total{type="sso.warning"}`:       1,
		`keygate_audit_events_total{type="token.issued"}`:      0,
		`keygate_gateway_sessions`:                             0,
		`keygate_saml_idp_certificate_expiring`:                1,
		`keygate_saml_metadata_refresh_failures_total`:         0,
	} {
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "keygate_saml_metadata_last_success_timestamp_seconds"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}

	resp, err = api.Get("https://" + srv.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("the API listener serves /metrics; only listen.metrics should")
	}
}

// scrapeURL fetches metrics and returns each sample by its series as
// written.
func scrapeURL(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	return metricstest.Samples(t, resp.Body)
}

// runServer makes a server of cfg and runs it until the test ends.
func runServer(t *testing.T, cfg *config.Config) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}
