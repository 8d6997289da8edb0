package metrics

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	crewjam "github.com/crewjam/saml"

	"github.com/keygate/keygate/metrics/metricstest"
	"github.com/keygate/keygate/sso/saml"
)

// The identity provider's metadata in these tests is written by crewjam/saml,
// an implementation independent of the one keygate reads it with.

// idpCert makes a self-signed signing certificate for the identity provider.
func idpCert(t *testing.T, cn string, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// metadataServer publishes identity provider metadata that a test can
// rotate or take down.
type metadataServer struct {
	t   *testing.T
	url string

	mu   sync.Mutex
	raw  []byte
	down bool
}

func newMetadataServer(t *testing.T) *metadataServer {
	m := &metadataServer{t: t}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/samlmetadata+xml")
		w.Write(m.raw)
	}))
	t.Cleanup(srv.Close)
	m.url = srv.URL + "/metadata"
	return m
}

// publish makes the metadata list certs as the signing certificates.
func (m *metadataServer) publish(certs ...*x509.Certificate) {
	m.t.Helper()
	u, _ := url.Parse(m.url)
	sso := *u
	sso.Path = "/sso"
	var ed *crewjam.EntityDescriptor
	var kds []crewjam.KeyDescriptor
	for _, c := range certs {
		idp := &crewjam.IdentityProvider{Certificate: c, MetadataURL: *u, SSOURL: sso}
		md := idp.Metadata()
		if ed == nil {
			ed = md
		}
		for _, kd := range md.IDPSSODescriptors[0].KeyDescriptors {
			if kd.Use == "signing" {
				kds = append(kds, kd)
			}
		}
	}
	ed.IDPSSODescriptors[0].KeyDescriptors = kds
	raw, err := xml.Marshal(ed)
	if err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	m.raw, m.down = raw, false
	m.mu.Unlock()
}

func (m *metadataServer) fail() {
	m.mu.Lock()
	m.down = true
	m.mu.Unlock()
}

// scrape fetches the handler's /metrics and returns each sample by its
// series as written, such as `name{label="value"}`.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", Path, rec.Code, rec.Body)
	}
	return metricstest.Samples(t, rec.Body)
}

// series lists the samples of the metric name.
func series(samples map[string]float64, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range samples {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// certSeries is the expiry series of c as the collector names it: by the
// fingerprint that keygate's warnings print.
func certSeries(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return fmt.Sprintf(`keygate_saml_idp_certificate_expiry_timestamp_seconds{fingerprint="%X",subject="%s"}`, h[:8], c.Subject.String())
}

const (
	expirySeries   = "keygate_saml_idp_certificate_expiry_timestamp_seconds"
	expiringSeries = "keygate_saml_idp_certificate_expiring"
	failureSeries  = "keygate_saml_metadata_refresh_failures_total"
	successSeries  = "keygate_saml_metadata_last_success_timestamp_seconds"
)

// A certificate that expires within 14 days shows as expiring, with its
// NotAfter; after the identity provider rotates to a new certificate, the
// old one's series goes away; a refresh that fails counts as a failure and
// leaves the last success and the trusted certificates as they were.
func TestSAMLCollector(t *testing.T) {
	ctx := context.Background()
	md := newMetadataServer(t)
	_, oldCert := idpCert(t, "idp-2025", time.Now().Add(5*24*time.Hour))
	md.publish(oldCert)
	var warnings []string
	p, err := saml.New(ctx, saml.Config{EntityID: "https://keygate.test/saml/metadata", ACSURL: "https://keygate.test/saml/acs",
		MetadataURL: md.url, Refresh: time.Hour,
		Warn: func(kind, _ string, _ map[string]any) { warnings = append(warnings, kind) }})
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	reg.MustRegister(NewSAMLCollector(p))
	h := Handler(reg, slog.New(slog.DiscardHandler))

	m := scrape(t, h)
	if got := series(m, expirySeries); len(got) != 1 || got[certSeries(oldCert)] != float64(oldCert.NotAfter.Unix()) {
		t.Fatalf("expiry series = %v; want only %s = %d", got, certSeries(oldCert), oldCert.NotAfter.Unix())
	}
	if m[expiringSeries] != 1 || len(warnings) != 1 {
		t.Fatalf("a certificate expiring in 5 days: expiring = %v, warnings %q; want 1 and one certificate_expiring warning", m[expiringSeries], warnings)
	}
	if v, ok := m[failureSeries]; !ok || v != 0 {
		t.Fatalf("refresh failures = %v (present %v) before any failure", v, ok)
	}
	firstSuccess := m[successSeries]
	if d := time.Since(time.Unix(int64(firstSuccess), 0)); d < 0 || d > time.Minute {
		t.Fatalf("last success %v is not the start-up read", firstSuccess)
	}

	// During a rotation the metadata lists both certificates; once the old
	// one is dropped, so is its series, and nothing is expiring any more.
	_, newCert := idpCert(t, "idp-2026", time.Now().Add(365*24*time.Hour))
	md.publish(oldCert, newCert)
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := series(scrape(t, h), expirySeries); len(got) != 2 || got[certSeries(newCert)] != float64(newCert.NotAfter.Unix()) {
		t.Fatalf("expiry series during the rotation = %v; want both certificates", got)
	}
	md.publish(newCert)
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	m = scrape(t, h)
	if got := series(m, expirySeries); len(got) != 1 || got[certSeries(newCert)] != float64(newCert.NotAfter.Unix()) {
		t.Fatalf("expiry series after the rotation = %v; want only %s", got, certSeries(newCert))
	}
	if m[expiringSeries] != 0 {
		t.Fatalf("expiring = %v after the expiring certificate left the metadata", m[expiringSeries])
	}
	lastSuccess := m[successSeries]
	if lastSuccess < firstSuccess {
		t.Fatalf("last success went back from %v to %v", firstSuccess, lastSuccess)
	}

	md.fail()
	for i := 1; i <= 2; i++ {
		if err := p.Refresh(ctx); err == nil {
			t.Fatal("refresh from a failing metadata URL succeeded")
		}
		m = scrape(t, h)
		if m[failureSeries] != float64(i) {
			t.Fatalf("refresh failures = %v after %d failed refreshes", m[failureSeries], i)
		}
	}
	if m[successSeries] != lastSuccess {
		t.Fatalf("last success moved from %v to %v on a failed refresh", lastSuccess, m[successSeries])
	}
	if got := series(m, expirySeries); len(got) != 1 || got[certSeries(newCert)] == 0 {
		t.Fatalf("expiry series after a failed refresh = %v; want the certificate still trusted", got)
	}
}
