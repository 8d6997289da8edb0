package saml

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/russellhaering/gosaml2/types"
)

// idp is what keygate knows of the identity provider, from its metadata.
type idp struct {
	entityID string
	ssoURL   string // HTTP-Redirect binding
	certs    []*x509.Certificate
}

const (
	bindingRedirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
	// maxMetadata bounds a metadata document; Azure AD's is about 20 KiB.
	maxMetadata = 4 << 20
)

// entities is an EntitiesDescriptor: some providers publish their metadata
// wrapped in one.
type entities struct {
	XMLName  xml.Name                 `xml:"urn:oasis:names:tc:SAML:2.0:metadata EntitiesDescriptor"`
	Entities []types.EntityDescriptor `xml:"EntityDescriptor"`
}

// parseMetadata reads an identity provider's metadata: its entity ID, its
// single sign-on URL for the redirect binding, and every signing
// certificate it lists (during a rotation there are two).
func parseMetadata(raw []byte) (*idp, error) {
	if strings.Contains(string(raw), "<!DOCTYPE") {
		return nil, errors.New("metadata with a DOCTYPE is refused")
	}
	var ed types.EntityDescriptor
	if err := xml.Unmarshal(raw, &ed); err != nil {
		var es entities
		if xml.Unmarshal(raw, &es) != nil {
			return nil, fmt.Errorf("not SAML metadata (an EntityDescriptor): %w", err)
		}
		found := false
		for _, e := range es.Entities {
			if e.IDPSSODescriptor != nil {
				ed, found = e, true
				break
			}
		}
		if !found {
			return nil, errors.New("the metadata describes no identity provider (no IDPSSODescriptor)")
		}
	}
	d := ed.IDPSSODescriptor
	if d == nil {
		return nil, errors.New("the metadata describes no identity provider (no IDPSSODescriptor): is this the service provider's metadata?")
	}
	out := &idp{entityID: ed.EntityID}
	if out.entityID == "" {
		return nil, errors.New("the metadata has no entityID")
	}
	for _, s := range d.SingleSignOnServices {
		if s.Binding == bindingRedirect {
			out.ssoURL = s.Location
		}
	}
	if out.ssoURL == "" {
		return nil, errors.New("the metadata lists no SingleSignOnService with the HTTP-Redirect binding")
	}
	seen := map[[32]byte]bool{}
	for _, kd := range d.KeyDescriptors {
		if kd.Use != "" && kd.Use != "signing" {
			continue
		}
		for _, xc := range kd.KeyInfo.X509Data.X509Certificates {
			der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(xc.Data), ""))
			if err != nil {
				return nil, fmt.Errorf("a signing certificate in the metadata is not base64: %w", err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("a signing certificate in the metadata does not parse: %w", err)
			}
			if h := sha256.Sum256(der); !seen[h] {
				seen[h] = true
				out.certs = append(out.certs, cert)
			}
		}
	}
	if len(out.certs) == 0 {
		return nil, errors.New("the metadata lists no signing certificate")
	}
	return out, nil
}

// fetchMetadata reads the metadata from the URL or the file.
func (p *Provider) fetchMetadata(ctx context.Context) ([]byte, error) {
	if p.cfg.MetadataFile != "" {
		raw, err := os.ReadFile(p.cfg.MetadataFile)
		if err != nil {
			return nil, fmt.Errorf("read IdP metadata: %w", err)
		}
		return raw, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.MetadataURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch IdP metadata: %w", err)
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch IdP metadata from %s: %w", p.cfg.MetadataURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch IdP metadata from %s: HTTP %s", p.cfg.MetadataURL, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("fetch IdP metadata from %s: %w", p.cfg.MetadataURL, err)
	}
	if len(raw) > maxMetadata {
		return nil, fmt.Errorf("fetch IdP metadata from %s: larger than %d bytes", p.cfg.MetadataURL, maxMetadata)
	}
	return raw, nil
}

func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return fmt.Sprintf("%X", h[:8])
}
