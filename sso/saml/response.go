package saml

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"
	saml2 "github.com/russellhaering/gosaml2"
	"github.com/russellhaering/gosaml2/types"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/keygate/keygate/sso"
)

// maxResponse bounds a decoded SAML response.
const maxResponse = 1 << 20

const (
	nsProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsDSig      = "http://www.w3.org/2000/09/xmldsig#"
)

// mfaClassRefs are AuthnContextClassRef values that mean more than one
// factor: SAML's own multi-factor classes, Azure AD's multipleauthn, and the
// values Okta and ADFS send for MFA.
var mfaClassRefs = []string{
	"urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:Smartcard",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor",
	"http://schemas.microsoft.com/claims/multipleauthn",
	"http://schemas.microsoft.com/ws/2012/12/authmethod/otp",
	"urn:okta:saml:2.0:ac:classes:mfa",
}

// HandleResponse implements sso.SAMLConnector.
func (p *Provider) HandleResponse(ctx context.Context, encoded, inResponseTo string) (sso.Identity, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(encoded), ""))
	if err != nil || len(raw) == 0 {
		return sso.Identity{}, sso.Refuse("malformed", err, "the identity provider's response is not a base64 SAML response")
	}
	if len(raw) > maxResponse {
		return sso.Identity{}, sso.Refuse("malformed", nil, "the identity provider's response is larger than %d bytes", maxResponse)
	}
	md, now := p.current(), p.cfg.Now()
	signers, err := checkStructure(raw, md.certs)
	if err != nil {
		return sso.Identity{}, err
	}
	if err := checkCertValidity(signers, now, p.cfg.ClockSkew); err != nil {
		return sso.Identity{}, err
	}
	// gosaml2's clock runs ClockSkew behind, so that the expiry checks it
	// makes itself allow for skew; keygate checks NotBefore itself, and
	// the certificates goxmldsig checks against that clock carry
	// certWindow moved onto it.
	sp := p.sp(md, now, p.cfg.ClockSkew)
	resp, err := sp.ValidateEncodedResponse(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return sso.Identity{}, classify(err)
	}
	if len(resp.Assertions) != 1 {
		return sso.Identity{}, sso.Refuse("signature_wrapping", nil, "the response must carry exactly one signed assertion, not %d", len(resp.Assertions))
	}
	a := resp.Assertions[0]
	if err := p.checkConditions(sp, &a); err != nil {
		return sso.Identity{}, err
	}
	if err := checkInResponseTo(resp, &a, inResponseTo); err != nil {
		return sso.Identity{}, err
	}
	if a.Subject == nil || a.Subject.NameID == nil || strings.TrimSpace(a.Subject.NameID.Value) == "" {
		return sso.Identity{}, sso.Refuse("malformed", nil, "the assertion has no NameID")
	}
	if err := p.remember(ctx, a.ID, a.Conditions.NotOnOrAfter); err != nil {
		return sso.Identity{}, err
	}
	claims := sso.Claims{}
	if a.AttributeStatement != nil {
		for _, at := range a.AttributeStatement.Attributes {
			for _, v := range at.Values {
				claims[at.Name] = append(claims[at.Name], v.Value)
			}
		}
	}
	id, err := p.cfg.Mapping.Identity("saml", strings.TrimSpace(a.Subject.NameID.Value), claims)
	if err != nil {
		return sso.Identity{}, err
	}
	if st := a.AuthnStatement; st != nil {
		if st.AuthnContext != nil && st.AuthnContext.AuthnContextClassRef != nil {
			ref := strings.TrimSpace(st.AuthnContext.AuthnContextClassRef.Value)
			id.MFA = id.MFA || slices.ContainsFunc(mfaClassRefs, func(m string) bool { return strings.EqualFold(m, ref) })
		}
		if st.SessionNotOnOrAfter != nil {
			id.NotAfter = *st.SessionNotOnOrAfter
		}
	}
	return id, nil
}

// checkStructure refuses documents whose shape no honest identity
// provider produces, before any signature is looked at: a DOCTYPE,
// comments, CDATA sections, anything but one Response holding at most one
// assertion as its direct child, duplicate IDs, and signatures that do not
// sit directly on the element they reference. Each of those is a form of
// signature wrapping or of comment injection. It also refuses a signature
// whose embedded certificate is not one the metadata lists, and returns
// the certificates the signatures it saw are to be checked with.
func checkStructure(raw []byte, trusted []*x509.Certificate) ([]*x509.Certificate, error) {
	if bytes.Contains(raw, []byte("<!DOCTYPE")) || bytes.Contains(raw, []byte("<!ENTITY")) {
		return nil, sso.Refuse("malformed", nil, "the response carries a DOCTYPE, which SAML never needs")
	}
	if bytes.Contains(raw, []byte("<!--")) {
		return nil, sso.Refuse("xml_comment", nil, "the response contains an XML comment; comments can make the signed NameID differ from the one read, so keygate refuses them")
	}
	// Canonicalisation turns a CDATA section into plain text, so a value
	// split by one still verifies; a reader that stops at the section
	// boundary sees another value than the one signed. Identity providers
	// escape their values instead.
	if bytes.Contains(raw, []byte("<![CDATA[")) {
		return nil, sso.Refuse("malformed", nil, "the response contains a CDATA section, which identity providers do not send; one can make the signed NameID differ from the one read, so keygate refuses it")
	}
	doc := etree.NewDocument()
	doc.ReadSettings.Permissive = false
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, sso.Refuse("malformed", err, "the response is not well-formed XML")
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != nsProtocol {
		return nil, sso.Refuse("malformed", nil, "the document is not a SAML Response")
	}
	ids := map[string]bool{}
	assertions := 0
	var signers []*x509.Certificate
	var walk func(el *etree.Element) error
	walk = func(el *etree.Element) error {
		if id := el.SelectAttrValue("ID", ""); id != "" {
			if ids[id] {
				return sso.Refuse("signature_wrapping", nil, "two elements share the ID %q", id)
			}
			ids[id] = true
		}
		ns := el.NamespaceURI()
		switch {
		case ns == nsAssertion && (el.Tag == "Assertion" || el.Tag == "EncryptedAssertion"):
			assertions++
			if el.Parent() != root {
				return sso.Refuse("signature_wrapping", nil, "an assertion is nested inside %s instead of the Response", el.Parent().Tag)
			}
		case ns == nsDSig && el.Tag == "Signature":
			if err := checkSignaturePlacement(el, root); err != nil {
				return err
			}
			certs, err := signingCerts(el, trusted)
			if err != nil {
				return err
			}
			signers = append(signers, certs...)
		}
		for _, c := range el.ChildElements() {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	if assertions > 1 {
		return nil, sso.Refuse("signature_wrapping", nil, "the response carries %d assertions; keygate accepts exactly one", assertions)
	}
	return signers, nil
}

// checkSignaturePlacement accepts a signature only as a direct child of
// the Response or of its assertion, referencing that same element by ID.
func checkSignaturePlacement(sig, root *etree.Element) error {
	parent := sig.Parent()
	if parent != root && (parent.Parent() != root || parent.Tag != "Assertion") {
		return sso.Refuse("signature_wrapping", nil, "a signature sits inside %s, not on the Response or its assertion", parent.Tag)
	}
	refs := 0
	for _, si := range sig.ChildElements() {
		if si.Tag != "SignedInfo" {
			continue
		}
		for _, ref := range si.ChildElements() {
			if ref.Tag != "Reference" {
				continue
			}
			refs++
			if ref.SelectAttrValue("URI", "") != "#"+parent.SelectAttrValue("ID", "\x00") {
				return sso.Refuse("signature_wrapping", nil, "a signature on %s references another element", parent.Tag)
			}
		}
	}
	if refs != 1 {
		return sso.Refuse("signature_wrapping", nil, "a signature must reference exactly one element, not %d", refs)
	}
	return nil
}

// signingCerts is the certificates a signature is checked with: those its
// KeyInfo carries, each of which the metadata must list, or, when it
// carries none, the metadata's only certificate (goxmldsig's choice too;
// with several it refuses the signature). goxmldsig would refuse an
// unlisted certificate as well; checking first gives the refusal its own
// reason.
func signingCerts(sig *etree.Element, trusted []*x509.Certificate) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, el := range sig.FindElements(".//X509Certificate") {
		der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(el.Text()), ""))
		if err != nil {
			return nil, sso.Refuse("untrusted_certificate", err, "the signature's certificate does not decode")
		}
		i := slices.IndexFunc(trusted, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, der) })
		if i < 0 {
			return nil, sso.Refuse("untrusted_certificate", nil, "the response is signed with a certificate the identity provider's metadata does not list: if the provider rotated its certificate, its metadata must list the new one")
		}
		out = append(out, trusted[i])
	}
	if len(out) == 0 && len(trusted) == 1 {
		out = trusted
	}
	return out, nil
}

// checkCertValidity refuses a response signed with a certificate outside
// its certWindow at now. goxmldsig enforces the same window
// (validityView), but reports a miss as a signature that does not verify;
// checking first names the certificate and the end of its life that was
// missed.
func checkCertValidity(certs []*x509.Certificate, now time.Time, skew time.Duration) error {
	for _, c := range certs {
		from, until := certWindow(c, skew)
		switch {
		case now.Before(from):
			return sso.Refuse("certificate_not_yet_valid", nil, "the identity provider signed with certificate %s, which is valid only from %s; keygate's clock says %s and allows %s of skew: the provider switched to a new signing certificate before it became valid, or a clock is wrong; check both clocks, or have the provider sign with its current certificate until the new one is valid",
				fingerprint(c), c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
		case now.After(until):
			return sso.Refuse("certificate_expired", nil, "the identity provider signed with certificate %s, which expired at %s; keygate's clock says %s and allows %s of skew: the provider must sign with a new certificate, listed in its metadata",
				fingerprint(c), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
		}
	}
	return nil
}

// classify turns gosaml2's errors into refusals with their own codes.
func classify(err error) error {
	cause := err
	var ev saml2.ErrVerification
	if errors.As(err, &ev) {
		cause = ev.Cause
	}
	var iv saml2.ErrInvalidValue
	var me saml2.ErrMissingElement
	switch {
	case errors.Is(cause, dsig.ErrMissingSignature):
		return sso.Refuse("unsigned", err, "the response is not signed: keygate accepts only responses or assertions signed by the identity provider")
	case errors.As(cause, &iv):
		switch {
		case iv.Reason == saml2.ReasonExpired:
			return sso.Refuse("expired", err, "the assertion has expired: check that the clocks of keygate and the identity provider are right")
		case iv.Key == saml2.DestinationAttr:
			return sso.Refuse("destination", err, "the response is addressed to %q, not to keygate's %q", iv.Actual, iv.Expected)
		case iv.Key == saml2.RecipientAttr:
			return sso.Refuse("recipient", err, "the assertion is for recipient %q, not keygate's %q: set the Reply URL (ACS URL) to %s", iv.Actual, iv.Expected, iv.Expected)
		case iv.Key == saml2.IssuerTag:
			return sso.Refuse("issuer", err, "the response comes from %q, not the identity provider in the metadata (%q)", iv.Actual, iv.Expected)
		case iv.Key == saml2.StatusCodeTag:
			return sso.Refuse("status", err, "the identity provider did not sign you in (status %s)", iv.Actual)
		}
		return sso.Refuse("invalid", err, "the response is not valid: %s", iv.Error())
	case errors.As(cause, &me):
		return sso.Refuse("malformed", err, "the response lacks %s", me.Tag)
	}
	return sso.Refuse("bad_signature", err, "the response's signature does not verify")
}

// checkConditions checks audience and validity window; gosaml2 reports
// both only as warnings.
func (p *Provider) checkConditions(sp *saml2.SAMLServiceProvider, a *types.Assertion) error {
	w, err := sp.VerifyAssertionConditions(a)
	if err != nil {
		return classify(err)
	}
	if w.NotInAudience || len(a.Conditions.AudienceRestrictions) == 0 {
		return sso.Refuse("audience", nil, "the assertion is not for keygate (audience %q): set the identifier (entity ID) at the identity provider to %s", audiences(a), p.cfg.EntityID)
	}
	now, skew := p.cfg.Now(), p.cfg.ClockSkew
	nb, err1 := time.Parse(time.RFC3339, a.Conditions.NotBefore)
	na, err2 := time.Parse(time.RFC3339, a.Conditions.NotOnOrAfter)
	if err1 != nil || err2 != nil {
		return sso.Refuse("malformed", errors.Join(err1, err2), "the assertion's validity window does not parse")
	}
	if now.Add(skew).Before(nb) {
		return sso.Refuse("not_yet_valid", nil, "the assertion is valid only from %s; keygate's clock says %s: check both clocks", nb.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Add(-skew).Before(na) {
		return sso.Refuse("expired", nil, "the assertion expired at %s; keygate's clock says %s", na.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func audiences(a *types.Assertion) string {
	var out []string
	for _, r := range a.Conditions.AudienceRestrictions {
		for _, au := range r.Audiences {
			out = append(out, au.Value)
		}
	}
	return strings.Join(out, ", ")
}

// checkInResponseTo ties the response to the request this browser was sent
// with. A response nobody asked for must not claim to answer a request.
func checkInResponseTo(resp *types.Response, a *types.Assertion, want string) error {
	var scd string
	if a.Subject != nil && a.Subject.SubjectConfirmation != nil && a.Subject.SubjectConfirmation.SubjectConfirmationData != nil {
		scd = a.Subject.SubjectConfirmation.SubjectConfirmationData.InResponseTo
	}
	if want == "" {
		if resp.InResponseTo != "" || scd != "" {
			return sso.Refuse("in_response_to", nil, "the response answers a request keygate did not send")
		}
		return nil
	}
	if resp.InResponseTo != want || (scd != "" && scd != want) {
		return sso.Refuse("in_response_to", nil, "the response answers a request keygate did not send from this browser: start again from the link keygate login printed")
	}
	return nil
}

// remember refuses an assertion ID seen before, and keeps it until the
// assertion could no longer be accepted anyway.
func (p *Provider) remember(ctx context.Context, id, notOnOrAfter string) error {
	if id == "" {
		return sso.Refuse("malformed", nil, "the assertion has no ID")
	}
	until, err := time.Parse(time.RFC3339, notOnOrAfter)
	if err != nil {
		return sso.Refuse("malformed", err, "the assertion's NotOnOrAfter does not parse")
	}
	first, err := p.cfg.Used.FirstUse(ctx, id, until.Add(p.cfg.ClockSkew))
	if err != nil {
		return fmt.Errorf("check the assertion was not used before: %w", err)
	}
	if !first {
		return sso.Refuse("replayed", nil, "this assertion was already used to sign in; sign in again")
	}
	return nil
}

// memoryUsed remembers assertions for a Provider used alone.
type memoryUsed struct {
	mu   sync.Mutex
	seen map[string]time.Time // assertion ID → when it can be forgotten
	now  func() time.Time
}

func (m *memoryUsed) FirstUse(_ context.Context, id string, until time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.seen {
		if now.After(t) {
			delete(m.seen, k)
		}
	}
	if _, dup := m.seen[id]; dup {
		return false, nil
	}
	m.seen[id] = until
	return true, nil
}
