package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/sso/oidc"
	"github.com/keygate/keygate/sso/saml"
	"github.com/keygate/keygate/store"
)

// SAMLKeyFile holds keygate's SAML service provider key and certificate.
const SAMLKeyFile = "saml-sp.pem"

// buildSSO assembles sign-in from the sso section: the SAML and OIDC
// connectors it configures, behind the device authorization endpoints,
// and browser sign-in for the portal when s.portal is set.
// Without an sso section those endpoints answer that sign-in is not
// configured.
func (s *Server) buildSSO(ctx context.Context, now func() time.Time) (*sso.Service, error) {
	c := s.cfg.SSO
	base := s.cfg.APIURL()
	opts := sso.Options{Store: s.store, Audit: s.events, Log: s.log, Now: now, BaseURL: base,
		SessionDuration: time.Duration(c.SessionDuration), MatchBy: c.MatchBy, JITUsers: c.JITUsers, Browser: s.portal}
	if m := c.SAML; m != nil {
		hc, err := providerClient(s.cfg.Resolve(m.CAFile))
		if err != nil {
			return nil, fmt.Errorf("sso.saml.ca_file: %w", err)
		}
		p, err := saml.New(ctx, saml.Config{EntityID: m.EntityID, ACSURL: base + sso.PathSAMLACS, HTTPClient: hc,
			MetadataURL: m.IdPMetadataURL, MetadataFile: s.cfg.Resolve(m.IdPMetadataFile), Refresh: time.Duration(m.MetadataRefresh),
			ClockSkew: time.Duration(c.ClockSkew), Mapping: mapping(m.Attributes), Key: s.samlKey, Cert: s.samlCert, Now: now, Log: s.log, Warn: s.ssoWarning,
			Used: usedAssertions{st: s.store, now: now}})
		if err != nil {
			return nil, fmt.Errorf("sso.saml: %w", err)
		}
		s.saml, opts.SAML, opts.IdPInitiated = p, p, m.IdPInitiated
	}
	if o := c.OIDC; o != nil {
		secret := ""
		if o.ClientSecretEnv != "" {
			v, ok := os.LookupEnv(o.ClientSecretEnv)
			if !ok {
				return nil, fmt.Errorf("sso.oidc: client_secret_env names %s, which is not set", o.ClientSecretEnv)
			}
			secret = v
		}
		hc, err := providerClient(s.cfg.Resolve(o.CAFile))
		if err != nil {
			return nil, fmt.Errorf("sso.oidc.ca_file: %w", err)
		}
		p, err := oidc.New(ctx, oidc.Config{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: base + sso.PathOIDCCallback, HTTPClient: hc,
			Scopes: o.Scopes, Mapping: mapping(o.Attributes), Now: now, ClockSkew: time.Duration(c.ClockSkew)})
		if err != nil {
			return nil, fmt.Errorf("sso.oidc: %w", err)
		}
		opts.OIDC, opts.OIDCIssuer = p, o.Issuer
	}
	return sso.New(opts), nil
}

// usedAssertions remembers the SAML assertions used to sign in, in the
// store: a response replayed to another server on the same state is
// refused there too.
type usedAssertions struct {
	st  store.Store
	now func() time.Time
}

func (u usedAssertions) FirstUse(ctx context.Context, id string, until time.Time) (bool, error) {
	h := sha256.Sum256([]byte(id))
	created, _, err := u.st.PutPending(ctx, store.Pending{Kind: "saml_assertion", Key: hex.EncodeToString(h[:]), Value: []byte{}, Expires: until}, u.now(), 0)
	return created, err
}

func mapping(a config.Attributes) sso.Mapping {
	return sso.Mapping{UserName: a.UserName, Email: a.Email, Groups: a.Groups, Tags: a.Tags}
}

// ssoWarning reports what breaks sign-in unless an operator acts: in the
// log and in the audit log.
func (s *Server) ssoWarning(kind, message string, detail map[string]any) {
	s.log.Warn(message, "kind", kind, "detail", detail)
	d := map[string]any{"kind": kind}
	for k, v := range detail {
		d[k] = v
	}
	s.events.Record(audit.Event{Type: audit.SSOWarning, Actor: "sso:saml", Reason: message, Detail: d})
}

// providerClient is the HTTP client for an identity provider: the system's
// roots, plus the CA bundle in caFile when there is one.
func providerClient(caFile string) (*http.Client, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	c.Transport = t
	return c, nil
}
