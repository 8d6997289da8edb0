package saml

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testidp"
	"github.com/keygate/keygate/sso"
)

// FuzzCheckStructure feeds arbitrary documents to the structural checks
// that run before any signature is verified: nothing panics, every
// refusal is an sso.Refusal with a code and a reason, and every
// certificate a signature is to be checked with is one the metadata lists.
func FuzzCheckStructure(f *testing.F) {
	for _, s := range []string{
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1"><saml:Assertion ID="a1"><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>`,
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="r1"><ds:Signature><ds:SignedInfo><ds:Reference URI="#r1"/></ds:SignedInfo><ds:KeyInfo><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature><saml:Assertion ID="a1"/></samlp:Response>`,
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="x"><saml:Assertion ID="x"/><saml:Assertion ID="y"><saml:Assertion/></saml:Assertion></samlp:Response>`,
		`<!-- c --><samlp:Response/>`,
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1"><saml:Assertion ID="a1"><saml:Subject><saml:NameID>ad<![CDATA[min]]></saml:NameID></saml:Subject></saml:Assertion></samlp:Response>`,
		`<a:Response xmlns:a="urn:oasis:names:tc:SAML:2.0:protocol"><b`,
	} {
		f.Add([]byte(s))
	}
	_, cert := testidp.KeyPair(f, "idp", time.Now().Add(time.Hour))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := checkStructure(raw, nil)
		if err == nil {
			var signers []*x509.Certificate
			signers, err = checkStructure(raw, []*x509.Certificate{cert})
			for _, c := range signers {
				if !c.Equal(cert) {
					t.Fatalf("%q: signed with %s, which the metadata does not list", raw, c.Subject)
				}
			}
		}
		if err == nil {
			return
		}
		var r *sso.Refusal
		if !errors.As(err, &r) || r.Code == "" || r.Reason == "" {
			t.Fatalf("%q: error %v is not a refusal with a code and a reason", raw, err)
		}
	})
}

// FuzzParseMetadata feeds arbitrary documents to the metadata parser:
// nothing panics, and a document it accepts names an entity, a sign-on URL
// and at least one certificate.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/"><IDPSSODescriptor><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>AAAA</X509Certificate></X509Data></KeyInfo></KeyDescriptor><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/></IDPSSODescriptor></EntityDescriptor>`))
	f.Add([]byte(`<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"><EntityDescriptor entityID="x"/></EntitiesDescriptor>`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		md, err := parseMetadata(raw)
		if err != nil {
			return
		}
		if md.entityID == "" || md.ssoURL == "" || len(md.certs) == 0 {
			t.Fatalf("%q accepted as %+v", raw, md)
		}
	})
}
