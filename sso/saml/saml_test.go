package saml

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"

	"github.com/keygate/keygate/internal/testidp"
	"github.com/keygate/keygate/sso"
)

// The identity provider in these tests is crewjam/saml's samlidp: a second,
// independent SAML implementation, whose signed output is either accepted
// or, altered in the ways attackers alter it, refused with its own code.

const (
	spEntityID = "https://keygate.test/saml/metadata"
	spACS      = "https://keygate.test/saml/acs"
)

// alice is the person the identity provider signs in.
var alice = testidp.Person{
	UserName: "alice", NameID: "alice@example.com", Email: "alice@example.com",
	Tags:       map[string]string{"project": "ledger"},
	Attributes: map[string][]string{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/department": {"Finance"}},
}

type env struct {
	t     *testing.T
	idp   *testidp.SAML
	p     *Provider
	now   time.Time
	warns []string
}

type envOptions struct {
	encrypt  bool
	notAfter time.Time // of the IdP certificate
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, now: time.Now()}
	e.idp = testidp.StartSAML(t, testidp.SAMLOptions{NotAfter: o.notAfter, People: []testidp.Person{alice}})
	spKey, spCert := testidp.KeyPair(t, "keygate", time.Now().Add(24*time.Hour))
	var err error
	e.p, err = New(context.Background(), Config{
		EntityID: spEntityID, ACSURL: spACS, MetadataURL: e.idp.MetadataURL, Refresh: time.Hour,
		ClockSkew: 2 * time.Minute, Key: spKey, Cert: spCert,
		Mapping: sso.Mapping{Tags: map[string]string{"department": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/department"}},
		Now:     func() time.Time { return e.now },
		Warn:    func(kind, msg string, _ map[string]any) { e.warns = append(e.warns, kind+": "+msg) },
	})
	if err != nil {
		t.Fatal(err)
	}
	md, err := e.p.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	e.idp.RegisterSP(t, md, o.encrypt)
	return e
}

// signIn signs alice in, with her assertion changed by mutate before the
// IdP signs it.
func (e *env) signIn(mutate func(a *crewjam.Assertion)) (string, string) {
	e.t.Helper()
	p := alice
	p.Mutate = mutate
	return e.signInAs(p)
}

// signInAs runs the SP-initiated flow against the IdP as p and returns
// the response as the browser would post it, and the request ID keygate
// sent.
func (e *env) signInAs(p testidp.Person) (string, string) {
	e.t.Helper()
	e.idp.AddPerson(p)
	target, reqID, err := e.p.AuthnRequestURL("relay-1")
	if err != nil {
		e.t.Fatal(err)
	}
	b := testidp.NewBrowser(e.t, nil)
	page := b.SAMLLogin(b.Get(target), p.UserName)
	return page.FormValue("SAMLResponse"), reqID
}

func wantRefusal(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refusal %q", code)
	}
	r := sso.AsRefusal(err)
	if r.Code != code {
		t.Fatalf("refusal %q (%v), want %q", r.Code, err, code)
	}
	if r.Reason == "" {
		t.Fatalf("refusal %q without a reason", code)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, reqID := e.signIn(nil)
	id, err := e.p.HandleResponse(context.Background(), resp, reqID)
	if err != nil {
		t.Fatal(err)
	}
	if id.Method != "saml" || id.UserName != "alice@example.com" || id.Email != "alice@example.com" {
		t.Fatalf("identity = %+v", id)
	}
	if id.Tags["project"] != "ledger" || id.Tags["department"] != "Finance" {
		t.Fatalf("tags = %v", id.Tags)
	}
	if id.MFA {
		t.Fatal("a password sign-in counted as MFA")
	}
}

// An AuthnContextClassRef that names a second factor makes the sign-in
// MFA.
func TestSignInWithMFA(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := alice
	p.MFA = true
	resp, reqID := e.signInAs(p)
	id, err := e.p.HandleResponse(context.Background(), resp, reqID)
	if err != nil {
		t.Fatal(err)
	}
	if !id.MFA {
		t.Fatalf("MFA class reference not recognised: %+v", id)
	}
}

// Encrypted assertions are decrypted with keygate's SP key, which its
// metadata publishes.
func TestEncryptedAssertion(t *testing.T) {
	e := newEnv(t, envOptions{encrypt: true})
	resp, reqID := e.signIn(nil)
	raw, _ := base64.StdEncoding.DecodeString(resp)
	if !strings.Contains(string(raw), "EncryptedAssertion") {
		t.Fatal("the IdP did not encrypt the assertion")
	}
	id, err := e.p.HandleResponse(context.Background(), resp, reqID)
	if err != nil {
		t.Fatal(err)
	}
	if id.UserName != "alice@example.com" {
		t.Fatalf("identity = %+v", id)
	}
}

// The hostile suite: each altered response is refused with its own code.
func TestHostileResponses(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	evil := func(doc *etree.Document) *etree.Element { return testidp.ForgedAssertion(doc, "admin@example.com") }
	tests := []struct {
		name   string
		mutate func(a *crewjam.Assertion)
		alter  func(t *testing.T, resp string) string
		code   string
	}{
		{name: "unsigned", code: "unsigned", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, testidp.Unsign)
		}},
		{name: "tampered NameID", code: "bad_signature", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				testidp.AssertionOf(doc).FindElement(".//NameID").SetText("admin@example.com")
			})
		}},
		{name: "comment in NameID", code: "xml_comment", alter: func(t *testing.T, r string) string {
			return testidp.CommentInNameID(t, r, "alice@example.com", ".evil")
		}},
		// Canonicalisation reads a CDATA section as text, so this one
		// still verifies: only the structural check refuses it.
		{name: "CDATA splitting the signed NameID", code: "malformed", alter: func(t *testing.T, r string) string {
			return replaceNameID(t, r, "ali<![CDATA[ce]]>@example.com")
		}},
		{name: "CDATA changing the NameID", code: "malformed", alter: func(t *testing.T, r string) string {
			return replaceNameID(t, r, "ad<![CDATA[min]]>@example.com")
		}},
		{name: "empty CDATA after the NameID", code: "malformed", alter: func(t *testing.T, r string) string {
			return replaceNameID(t, r, "alice@example.com<![CDATA[]]>")
		}},
		{name: "DOCTYPE", code: "malformed", alter: func(t *testing.T, r string) string {
			return testidp.EditResponseText(t, r, func(s string) string { return `<!DOCTYPE x [<!ENTITY e "admin">]>` + s })
		}},
		{name: "wrapping: evil assertion before the signed one", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root := doc.Root()
				root.InsertChildAt(testidp.AssertionOf(doc).Index(), evil(doc))
			})
		}},
		{name: "wrapping: evil assertion after the signed one", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) { doc.Root().AddChild(evil(doc)) })
		}},
		{name: "wrapping: signed assertion inside the evil one", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root, orig := doc.Root(), testidp.AssertionOf(doc)
				ev := evil(doc)
				root.InsertChildAt(orig.Index(), ev)
				root.RemoveChild(orig)
				ev.AddChild(orig)
			})
		}},
		{name: "wrapping: signed assertion in the evil signature's Object", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root, orig := doc.Root(), testidp.AssertionOf(doc)
				ev := evil(doc)
				sig := orig.SelectElement("Signature").Copy()
				obj := sig.CreateElement("ds:Object")
				root.InsertChildAt(orig.Index(), ev)
				root.RemoveChild(orig)
				obj.AddChild(orig)
				ev.InsertChildAt(1, sig)
			})
		}},
		{name: "wrapping: signed assertion moved into Extensions", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root, orig := doc.Root(), testidp.AssertionOf(doc)
				root.InsertChildAt(orig.Index(), evil(doc))
				root.RemoveChild(orig)
				root.CreateElement("samlp:Extensions").AddChild(orig)
			})
		}},
		{name: "wrapping: evil assertion with the signed one's ID", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root, orig := doc.Root(), testidp.AssertionOf(doc)
				ev := evil(doc)
				testidp.RemoveSignatures(root)
				root.InsertChildAt(orig.Index(), ev)
				root.CreateElement("samlp:Extensions").AddChild(orig)
			})
		}},
		{name: "wrapping: response signature moved onto the assertion", code: "signature_wrapping", alter: func(t *testing.T, r string) string {
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				root, a := doc.Root(), testidp.AssertionOf(doc)
				sig := root.SelectElement("Signature")
				testidp.RemoveSignatures(a)
				root.RemoveChild(sig)
				a.AddChild(sig)
			})
		}},
		{name: "wrong audience", code: "audience", mutate: func(a *crewjam.Assertion) {
			a.Conditions.AudienceRestrictions[0].Audience.Value = "https://other.example/saml"
		}},
		{name: "no audience", code: "audience", mutate: func(a *crewjam.Assertion) { a.Conditions.AudienceRestrictions = nil }},
		{name: "wrong recipient", code: "recipient", mutate: func(a *crewjam.Assertion) {
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = "https://other.example/acs"
		}},
		{name: "wrong destination", code: "destination", alter: func(t *testing.T, r string) string {
			// Azure AD signs only the assertion by default; the response
			// around it is then the attacker's to change.
			return testidp.EditResponse(t, r, func(doc *etree.Document) {
				testidp.RemoveSignatures(doc.Root())
				doc.Root().CreateAttr("Destination", "https://other.example/acs")
			})
		}},
		{name: "expired", code: "expired", mutate: func(a *crewjam.Assertion) {
			a.Conditions.NotBefore = time.Now().Add(-2 * time.Hour)
			a.Conditions.NotOnOrAfter = time.Now().Add(-time.Hour)
		}},
		{name: "not yet valid", code: "not_yet_valid", mutate: func(a *crewjam.Assertion) {
			a.Conditions.NotBefore = time.Now().Add(time.Hour)
			a.Conditions.NotOnOrAfter = time.Now().Add(2 * time.Hour)
		}},
		{name: "another issuer", code: "issuer", mutate: func(a *crewjam.Assertion) { a.Issuer.Value = "https://evil.example/idp" }},
		{name: "answers another request", code: "in_response_to", mutate: func(a *crewjam.Assertion) {
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.InResponseTo = "id-another-request"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, reqID := e.signIn(tt.mutate)
			if tt.alter != nil {
				resp = tt.alter(t, resp)
			}
			_, err := e.p.HandleResponse(ctx, resp, reqID)
			wantRefusal(t, err, tt.code)
		})
	}
}

// replaceNameID writes value, as raw XML, in place of alice's NameID.
func replaceNameID(t *testing.T, encoded, value string) string {
	t.Helper()
	return testidp.EditResponseText(t, encoded, func(s string) string {
		old := alice.NameID + "</saml:NameID>"
		if !strings.Contains(s, old) {
			t.Fatalf("the response has no NameID %q", alice.NameID)
		}
		return strings.Replace(s, old, value+"</saml:NameID>", 1)
	})
}

// An assertion is accepted once; a response is accepted only for the
// request this browser was sent with; one nobody asked for must not claim
// to answer a request.
func TestReplayAndRequestBinding(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	resp, reqID := e.signIn(nil)
	if _, err := e.p.HandleResponse(ctx, resp, "id-not-this-one"); err == nil {
		t.Fatal("accepted a response to another request")
	} else {
		wantRefusal(t, err, "in_response_to")
	}
	if _, err := e.p.HandleResponse(ctx, resp, ""); err == nil {
		t.Fatal("accepted a solicited response as unsolicited")
	} else {
		wantRefusal(t, err, "in_response_to")
	}
	if _, err := e.p.HandleResponse(ctx, resp, reqID); err != nil {
		t.Fatal(err)
	}
	_, err := e.p.HandleResponse(ctx, resp, reqID)
	wantRefusal(t, err, "replayed")
}

// Responses signed by a key the metadata does not list are refused, with
// or without the certificate embedded.
func TestUntrustedCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	key, cert := testidp.KeyPair(t, "attacker", time.Now().Add(time.Hour))
	e.idp.SetSigningKey(key, cert)
	resp, reqID := e.signIn(nil)
	_, err := e.p.HandleResponse(ctx, resp, reqID)
	wantRefusal(t, err, "untrusted_certificate")
	stripped := testidp.EditResponse(t, resp, func(doc *etree.Document) {
		for _, ki := range doc.FindElements("//KeyInfo") {
			ki.Parent().RemoveChild(ki)
		}
	})
	_, err = e.p.HandleResponse(ctx, stripped, reqID)
	wantRefusal(t, err, "bad_signature")
}

// The IdP rotates its signing certificate: once its metadata lists the new
// one, sign-ins signed with it succeed without a restart; while it lists
// both, both are accepted.
func TestCertificateRotation(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	oldKey, oldCert := e.idp.SigningKey()
	newKey, newCert := testidp.KeyPair(t, "idp-2027", time.Now().Add(2*365*24*time.Hour))
	e.idp.SetSigningKey(newKey, newCert)
	resp, reqID := e.signIn(nil)
	_, err := e.p.HandleResponse(ctx, resp, reqID)
	wantRefusal(t, err, "untrusted_certificate")
	if err := e.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	resp, reqID = e.signIn(nil)
	if _, err := e.p.HandleResponse(ctx, resp, reqID); err != nil {
		t.Fatalf("after the metadata refresh: %v", err)
	}
	// A metadata document listing both certificates, as during a rotation.
	both := e.idp.MetadataWith(t, oldCert, newCert)
	md, err := parseMetadata(both)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.certs) != 2 {
		t.Fatalf("metadata with two signing certificates gave %d", len(md.certs))
	}
	e.p.mu.Lock()
	e.p.idp = md
	e.p.mu.Unlock()
	for _, k := range []struct {
		key  any
		cert *x509.Certificate
	}{{oldKey, oldCert}, {newKey, newCert}} {
		e.idp.SetSigningKey(k.key, k.cert)
		resp, reqID := e.signIn(nil)
		if _, err := e.p.HandleResponse(ctx, resp, reqID); err != nil {
			t.Fatalf("signed with %s during the rotation: %v", k.cert.Subject.CommonName, err)
		}
	}
}

// signingPair makes a self-signed RSA key pair valid from notBefore to
// notAfter, such as a certificate the identity provider has just issued.
func signingPair(t *testing.T, notBefore, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), Subject: pkix.Name{CommonName: "idp-next"},
		NotBefore: notBefore, NotAfter: notAfter}
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

// The identity provider signs with a certificate whose life begins or ends
// near keygate's now, its metadata listing it. Within the clock skew (2
// minutes here) of either end the certificate is accepted; beyond it the
// refusal names the certificate's validity, not stale metadata. With the
// assertion encrypted and the response unsigned, keygate sees no
// signature before decrypting, and the window holds all the same.
func TestCertificateValidityWindow(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
		encrypt             bool
		code                string // empty: accepted
	}{
		{name: "issued a minute ahead of keygate's clock", notBefore: now.Add(time.Minute), notAfter: now.Add(365 * 24 * time.Hour)},
		{name: "issued just now", notBefore: now, notAfter: now.Add(365 * 24 * time.Hour)},
		{name: "issued five minutes ahead", notBefore: now.Add(5 * time.Minute), notAfter: now.Add(365 * 24 * time.Hour), code: "certificate_not_yet_valid"},
		{name: "expired a minute ago", notBefore: now.Add(-time.Hour), notAfter: now.Add(-time.Minute)},
		{name: "expired five minutes ago", notBefore: now.Add(-time.Hour), notAfter: now.Add(-5 * time.Minute), code: "certificate_expired"},
		{name: "encrypted, issued a minute ahead", notBefore: now.Add(time.Minute), notAfter: now.Add(365 * 24 * time.Hour), encrypt: true},
		{name: "encrypted, issued five minutes ahead", notBefore: now.Add(5 * time.Minute), notAfter: now.Add(365 * 24 * time.Hour), encrypt: true, code: "bad_signature"},
		{name: "encrypted, expired five minutes ago", notBefore: now.Add(-time.Hour), notAfter: now.Add(-5 * time.Minute), encrypt: true, code: "bad_signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{encrypt: tt.encrypt})
			e.idp.SetSigningKey(signingPair(t, tt.notBefore, tt.notAfter))
			if err := e.p.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			resp, reqID := e.signIn(nil)
			if tt.encrypt {
				resp = testidp.EditResponse(t, resp, func(doc *etree.Document) { testidp.RemoveSignatures(doc.Root()) })
				if raw, _ := base64.StdEncoding.DecodeString(resp); !strings.Contains(string(raw), "EncryptedAssertion") || strings.Contains(string(raw), "SignatureValue") {
					t.Fatalf("want an encrypted assertion and no signature in sight: %s", raw)
				}
			}
			_, err := e.p.HandleResponse(ctx, resp, reqID)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantRefusal(t, err, tt.code)
			if r := sso.AsRefusal(err); tt.code == "certificate_not_yet_valid" && (strings.Contains(r.Reason, "metadata") || !strings.Contains(r.Reason, "valid only from")) {
				t.Fatalf("the refusal does not say the certificate is not valid yet: %s", r.Reason)
			}
		})
	}
}

// A signing certificate that expires within 14 days raises a warning, at
// most once a day; metadata that cannot be refreshed raises one too, and
// the certificates read before stay in use.
func TestWarnings(t *testing.T) {
	e := newEnv(t, envOptions{notAfter: time.Now().Add(10 * 24 * time.Hour)})
	ctx := context.Background()
	if len(e.warns) != 1 || !strings.HasPrefix(e.warns[0], "certificate_expiring") {
		t.Fatalf("warnings = %q", e.warns)
	}
	if err := e.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.warns) != 1 {
		t.Fatalf("warned again within a day: %q", e.warns)
	}
	e.now = e.now.Add(25 * time.Hour)
	if err := e.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.warns) != 2 {
		t.Fatalf("no warning a day later: %q", e.warns)
	}
	e.now = time.Now()
	e.idp.SetMetadataDown(true)
	if err := e.p.Refresh(ctx); err == nil {
		t.Fatal("refresh against a failing metadata URL succeeded")
	}
	if last := e.warns[len(e.warns)-1]; !strings.HasPrefix(last, "metadata_refresh_failed") {
		t.Fatalf("warnings = %q", e.warns)
	}
	st := e.p.Status()
	if st.RefreshError == nil || st.RefreshFailures != 1 {
		t.Fatalf("status after a failed refresh: error %v, failures %d; want the error and 1", st.RefreshError, st.RefreshFailures)
	}
	if len(st.Certs) != 1 || !st.Certs[0].Expiring || st.Certs[0].Subject != "CN=idp" || len(st.Certs[0].Fingerprint) != 16 ||
		!strings.Contains(e.warns[0], st.Certs[0].Fingerprint) {
		t.Fatalf("status certificates = %+v; want the expiring IdP certificate, named as the warning %q names it", st.Certs, e.warns[0])
	}
	resp, reqID := e.signIn(nil)
	if _, err := e.p.HandleResponse(ctx, resp, reqID); err != nil {
		t.Fatalf("sign-in with the metadata read before: %v", err)
	}
}

// keygate's SP metadata names its entity ID and ACS URL, and the
// certificate an IdP encrypts to.
func TestSPMetadata(t *testing.T) {
	e := newEnv(t, envOptions{})
	md, err := e.p.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	var ed crewjam.EntityDescriptor
	if err := xml.Unmarshal(md, &ed); err != nil {
		t.Fatal(err)
	}
	if ed.EntityID != spEntityID || len(ed.SPSSODescriptors) != 1 {
		t.Fatalf("metadata = %s", md)
	}
	d := ed.SPSSODescriptors[0]
	if len(d.AssertionConsumerServices) != 1 || d.AssertionConsumerServices[0].Location != spACS || d.WantAssertionsSigned == nil || !*d.WantAssertionsSigned {
		t.Fatalf("SP descriptor = %+v", d)
	}
}

// The SP key pair is created once and read back unchanged.
func TestLoadOrCreateKey(t *testing.T) {
	path := t.TempDir() + "/saml-sp.pem"
	k1, c1, err := LoadOrCreateKey(path, spEntityID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k2, c2, err := LoadOrCreateKey(path, spEntityID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) || !c1.Equal(c2) {
		t.Fatal("the key pair changed between starts")
	}
	_, c3, err := LoadOrCreateKey(path, spEntityID, time.Now().Add(spKeyLifetime-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if c3.Equal(c1) {
		t.Fatal("a certificate within a year of expiry was not renewed")
	}
}
