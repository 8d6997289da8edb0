// Package saml is keygate's SAML 2.0 service provider: it sends people to
// the identity provider with an AuthnRequest and validates what comes back
// to the assertion consumer service.
//
// Signature checking is gosaml2's (on goxmldsig ≥ 1.6.1, which fixed a
// signature bypass). Around it, keygate refuses what an SP should never
// accept even when a library would: a document with more than one
// assertion or with a signature that does not sit on the element it signs
// (the signature-wrapping forms), comments and CDATA sections (which split
// a NameID between what was signed and what is read), a DOCTYPE, a
// certificate the metadata does not list or that is not valid within the
// clock skew, an audience, recipient or destination that is not keygate's,
// a validity window that does not hold within the clock skew, a response
// to a request this browser did not send, and an assertion seen before.
// Each refusal carries its own code into the audit log.
package saml

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	saml2 "github.com/russellhaering/gosaml2"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/keygate/keygate/sso"
)

// Config configures a Provider.
type Config struct {
	// EntityID is keygate's entity ID, the audience assertions must name.
	EntityID string
	// ACSURL is keygate's assertion consumer service URL.
	ACSURL string
	// MetadataURL or MetadataFile locates the identity provider's metadata.
	MetadataURL  string
	MetadataFile string
	// Refresh is how often the metadata is read again.
	Refresh time.Duration
	// ClockSkew is how far the identity provider's clock may be off.
	ClockSkew time.Duration
	Mapping   sso.Mapping
	// Key and Cert are keygate's SP key pair: published in the metadata,
	// and used to decrypt encrypted assertions.
	Key        crypto.Signer
	Cert       *x509.Certificate
	HTTPClient *http.Client
	Now        func() time.Time
	Log        *slog.Logger
	// Used remembers the assertions already used to sign in. With several
	// servers it must be shared, or a response replayed to another server
	// would be taken; nil keeps them in this Provider's memory.
	Used UsedAssertions
	// Warn reports a condition an operator must act on before sign-in
	// breaks: a signing certificate that expires soon, or metadata that
	// cannot be refreshed. kind is "certificate_expiring" or
	// "metadata_refresh_failed".
	Warn func(kind, message string, detail map[string]any)
}

// UsedAssertions remembers assertion IDs, so that an assertion signs in
// once.
type UsedAssertions interface {
	// FirstUse records id until it can be forgotten, and reports whether
	// it was not recorded before.
	FirstUse(ctx context.Context, id string, until time.Time) (bool, error)
}

// ExpiryWarning is how long before an identity provider certificate
// expires that keygate starts warning.
const ExpiryWarning = 14 * 24 * time.Hour

// Provider is a SAML identity provider as keygate's service provider sees
// it.
type Provider struct {
	cfg Config

	mu          sync.RWMutex
	idp         *idp
	refreshed   time.Time
	refreshErr  error
	failures    uint64 // refreshes that failed since start
	warnedCerts map[string]time.Time
}

// New loads the identity provider's metadata; it fails when the metadata
// cannot be read, so that a wrong URL shows at start-up.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Warn == nil {
		cfg.Warn = func(string, string, map[string]any) {}
	}
	if cfg.Used == nil {
		cfg.Used = &memoryUsed{seen: map[string]time.Time{}, now: cfg.Now}
	}
	p := &Provider{cfg: cfg, warnedCerts: map[string]time.Time{}}
	if err := p.Refresh(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Refresh reads the metadata again. On failure the certificates already
// known stay in use, and a warning is raised.
func (p *Provider) Refresh(ctx context.Context) error {
	raw, err := p.fetchMetadata(ctx)
	var md *idp
	if err == nil {
		md, err = parseMetadata(raw)
		if err != nil {
			err = fmt.Errorf("IdP metadata: %w", err)
		}
	}
	p.mu.Lock()
	p.refreshErr = err
	if err == nil {
		p.idp, p.refreshed = md, p.cfg.Now()
	} else {
		p.failures++
	}
	known := p.idp
	p.mu.Unlock()
	if err != nil {
		if known != nil {
			p.cfg.Warn("metadata_refresh_failed", "cannot refresh the SAML identity provider's metadata; sign-in keeps using the certificates read before, and breaks if the provider rotates them", map[string]any{"error": err.Error()})
		}
		return err
	}
	p.checkExpiry(md)
	return nil
}

// checkExpiry warns, at most daily per certificate, about signing
// certificates that expire within ExpiryWarning.
func (p *Provider) checkExpiry(md *idp) {
	now := p.cfg.Now()
	for _, c := range md.certs {
		if !expiring(c, now) {
			continue
		}
		left := c.NotAfter.Sub(now)
		fp := fingerprint(c)
		p.mu.Lock()
		last, ok := p.warnedCerts[fp]
		due := !ok || now.Sub(last) >= 24*time.Hour
		if due {
			p.warnedCerts[fp] = now
		}
		p.mu.Unlock()
		if !due {
			continue
		}
		p.cfg.Warn("certificate_expiring", fmt.Sprintf("the SAML identity provider's signing certificate %s expires on %s: add the new certificate at the provider before then", fp, c.NotAfter.UTC().Format(time.DateOnly)),
			map[string]any{"fingerprint": fp, "subject": c.Subject.String(), "not_after": c.NotAfter.UTC(), "days_left": int(left.Hours() / 24)})
	}
}

// Run refreshes the metadata every cfg.Refresh until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.Refresh(ctx); err != nil {
				p.cfg.Log.Warn("SAML metadata refresh failed", "err", err)
			}
		}
	}
}

// Status is what keygate knows of the identity provider, for metrics and
// health checks.
type Status struct {
	EntityID string
	// Refreshed is when the metadata was last read successfully.
	Refreshed time.Time
	// RefreshError is the last refresh's error, nil when it succeeded.
	RefreshError error
	// RefreshFailures counts the refreshes that failed since start.
	RefreshFailures uint64
	// Certs are the signing certificates currently trusted: those of the
	// metadata last read successfully.
	Certs []CertStatus
}

// CertStatus is one trusted signing certificate.
type CertStatus struct {
	// Fingerprint is the one warnings name: the first 8 bytes of the
	// certificate's SHA-256, in upper-case hex.
	Fingerprint string
	Subject     string
	NotAfter    time.Time
	// Expiring is true within ExpiryWarning of NotAfter, and after it: the
	// same test that raises the certificate_expiring warning.
	Expiring bool
}

// Status reports the metadata's state.
func (p *Provider) Status() Status {
	now := p.cfg.Now()
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := Status{EntityID: p.idp.entityID, Refreshed: p.refreshed, RefreshError: p.refreshErr, RefreshFailures: p.failures}
	for _, c := range p.idp.certs {
		s.Certs = append(s.Certs, CertStatus{Fingerprint: fingerprint(c), Subject: c.Subject.String(), NotAfter: c.NotAfter, Expiring: expiring(c, now)})
	}
	return s
}

// expiring reports whether c is within ExpiryWarning of expiry at now.
func expiring(c *x509.Certificate, now time.Time) bool {
	return c.NotAfter.Sub(now) <= ExpiryWarning
}

func (p *Provider) current() *idp {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.idp
}

// certWindow is when keygate accepts a response signed with c: from its
// NotBefore minus skew until its NotAfter plus skew. The provider judges
// both ends of its certificate's life by its own clock, which may be skew
// away from keygate's; without the allowance a certificate the provider
// starts signing with the moment it is issued would be refused for up to
// skew. The expiry end stays at NotAfter plus skew, no later: the
// certificate_expiring warning gives ExpiryWarning to move to a new
// certificate before that.
func certWindow(c *x509.Certificate, skew time.Duration) (from, until time.Time) {
	return c.NotBefore.Add(-skew), c.NotAfter.Add(skew)
}

// certStore hands goxmldsig the certificates of one metadata snapshot.
type certStore []*x509.Certificate

func (c certStore) Certificates() ([]*x509.Certificate, error) { return c, nil }

// validityView is the certStore goxmldsig checks signatures against when
// its clock runs behind keygate's. goxmldsig refuses a certificate whose
// NotBefore–NotAfter does not hold its clock, with no allowance for skew
// and with an error indistinguishable from a forged signature. So it gets
// copies whose window is certWindow's, moved onto its clock: it then
// enforces exactly keygate's window, for signatures keygate cannot see
// before decrypting too. The copies keep their raw bytes, by which
// goxmldsig matches them to the certificate a signature embeds, and their
// public keys.
func validityView(certs []*x509.Certificate, skew, behind time.Duration) certStore {
	out := make(certStore, len(certs))
	for i, c := range certs {
		v := *c
		from, until := certWindow(c, skew)
		v.NotBefore, v.NotAfter = from.Add(-behind), until.Add(-behind)
		out[i] = &v
	}
	return out
}

// sp builds gosaml2's service provider for one operation, with its clock
// behind keygate's now: the expiry checks gosaml2 makes itself allow no
// skew, so validating a response sets its clock back by the skew.
func (p *Provider) sp(md *idp, now time.Time, behind time.Duration) *saml2.SAMLServiceProvider {
	sp := &saml2.SAMLServiceProvider{
		IdentityProviderSSOURL:      md.ssoURL,
		IdentityProviderSSOBinding:  bindingRedirect,
		IdentityProviderIssuer:      md.entityID,
		AssertionConsumerServiceURL: p.cfg.ACSURL,
		ServiceProviderIssuer:       p.cfg.EntityID,
		AudienceURI:                 p.cfg.EntityID,
		IDPCertificateStore:         validityView(md.certs, p.cfg.ClockSkew, behind),
		NameIdFormat:                "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
		AllowMissingAttributes:      true,
		Clock:                       dsig.NewFakeClockAt(now.Add(-behind)),
		MaximumDecompressedBodySize: maxResponse,
	}
	if p.cfg.Key != nil {
		// gosaml2 v0.12 decrypts only with the SPKeyStore field, not with
		// the key store SetSPKeyStore sets.
		sp.SPKeyStore = dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{p.cfg.Cert.Raw}, PrivateKey: p.cfg.Key, Leaf: p.cfg.Cert})
	}
	return sp
}

// AuthnRequestURL implements sso.SAMLConnector.
func (p *Provider) AuthnRequestURL(relayState string) (string, string, error) {
	sp := p.sp(p.current(), p.cfg.Now(), 0)
	doc, err := sp.BuildAuthRequestDocumentNoSig()
	if err != nil {
		return "", "", fmt.Errorf("build AuthnRequest: %w", err)
	}
	id := doc.Root().SelectAttrValue("ID", "")
	if id == "" {
		return "", "", errors.New("build AuthnRequest: no ID")
	}
	u, err := sp.BuildAuthURLRedirect(relayState, doc)
	if err != nil {
		return "", "", fmt.Errorf("build AuthnRequest URL: %w", err)
	}
	return u, id, nil
}

// Metadata implements sso.SAMLConnector: the document to upload to the
// identity provider.
func (p *Provider) Metadata() ([]byte, error) {
	ed, err := p.sp(p.current(), p.cfg.Now(), 0).Metadata()
	if err != nil {
		return nil, fmt.Errorf("SP metadata: %w", err)
	}
	out, err := xml.MarshalIndent(ed, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("SP metadata: %w", err)
	}
	return append([]byte(xml.Header), out...), nil
}
