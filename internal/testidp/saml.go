// Package testidp runs identity providers in-process for tests: crewjam's
// samlidp as a SAML identity provider and zitadel's example OpenID
// provider, each signing in the people a test describes, and a browser
// stand-in that walks keygate's device sign-in through them.
//
// Both providers are independent implementations of their protocols, so
// keygate's service provider and relying party are tested against code
// that is not theirs, the way they meet Azure AD or Okta. Tests reach into
// them only where a real provider would behave that way too: a person
// signing in with or without a second factor, a rotated signing
// certificate, metadata that cannot be fetched, or an assertion altered
// before it is signed, which is how the hostile tests make responses that
// carry a valid signature over the wrong content.
package testidp

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"
)

// Attribute names and values the SAML identity provider sends, as Azure
// AD and AWS IAM Identity Center spell them.
const (
	// TagAttributePrefix starts the attributes that carry principal tags.
	TagAttributePrefix = "https://aws.amazon.com/SAML/Attributes/PrincipalTag:"
	// GroupsAttribute carries a person's groups (samlidp's
	// eduPersonAffiliation).
	GroupsAttribute = "urn:oid:1.3.6.1.4.1.5923.1.1.1.1"
	// UIDAttribute carries the user name given at the login step.
	UIDAttribute = "urn:oid:0.9.2342.19200300.100.1.1"
	// MFAClassRef is the AuthnContextClassRef of a sign-in with a second
	// factor: Azure AD's.
	MFAClassRef = "http://schemas.microsoft.com/claims/multipleauthn"
	// PasswordClassRef is that of a password alone.
	PasswordClassRef = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
)

// Person is someone the SAML identity provider signs in.
type Person struct {
	// UserName is what the login step asks for; it is sent as the uid
	// attribute.
	UserName string
	// NameID is the assertion's subject; default UserName.
	NameID string
	Email  string
	// Groups are sent in GroupsAttribute.
	Groups []string
	// Tags are sent as TagAttributePrefix+KEY attributes.
	Tags map[string]string
	// Attributes are further attributes, by name.
	Attributes map[string][]string
	// MFA makes the sign-in one with a second factor (MFAClassRef) rather
	// than a password alone (PasswordClassRef).
	MFA bool
	// Mutate, if set, changes every assertion made for this person before
	// it is signed.
	Mutate func(a *crewjam.Assertion)
}

// SAMLOptions configure a SAML identity provider.
type SAMLOptions struct {
	// TLS serves the provider over HTTPS, with httptest's certificate.
	TLS bool
	// NotAfter is when the signing certificate expires; default a year
	// from now.
	NotAfter time.Time
	// People are the people it knows at start.
	People []Person
}

// SAML is crewjam's samlidp, serving in-process. Its login step is a form
// asking for a user name; it signs in the Person of that name.
type SAML struct {
	// URL is the provider's base URL.
	URL string
	// MetadataURL is where it publishes its metadata.
	MetadataURL string
	// Client reaches the provider, trusting its certificate.
	Client *http.Client

	srv *httptest.Server
	idp *samlidp.Server
	// keyMu guards the signing key and certificate: every request holds
	// it shared, so that a test swapping them never races a request.
	keyMu sync.RWMutex

	mu        sync.Mutex
	people    map[string]Person
	published []*x509.Certificate // nil: the signing certificate
	down      bool
	fetches   int
}

// StartSAML starts a SAML identity provider that stops when the test ends.
func StartSAML(t testing.TB, o SAMLOptions) *SAML {
	t.Helper()
	s, err := NewSAML(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewSAML starts a SAML identity provider; Close stops it.
func NewSAML(o SAMLOptions) (*SAML, error) {
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	key, cert, err := newKeyPair("idp", o.NotAfter)
	if err != nil {
		return nil, err
	}
	s := &SAML{people: map[string]Person{}}
	for _, p := range o.People {
		s.people[p.UserName] = p
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if o.TLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL, s.MetadataURL, s.Client = s.srv.URL, s.srv.URL+"/metadata", s.srv.Client()
	u, err := url.Parse(s.srv.URL)
	if err != nil {
		s.srv.Close()
		return nil, err
	}
	s.idp, err = samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{},
		Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		s.srv.Close()
		return nil, err
	}
	s.idp.IDP.SessionProvider = s
	s.idp.IDP.AssertionMaker = s
	return s, nil
}

// Close stops the provider.
func (s *SAML) Close() { s.srv.Close() }

// Certificate is the provider's TLS certificate, for a client to trust.
func (s *SAML) Certificate() *x509.Certificate { return s.srv.Certificate() }

func (s *SAML) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	if r.Method == http.MethodGet && r.URL.Path == "/metadata" {
		s.serveMetadata(w)
		return
	}
	s.idp.ServeHTTP(w, r)
}

// AddPerson adds a person, or replaces the one of the same user name.
func (s *SAML) AddPerson(p Person) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.people[p.UserName] = p
}

func (s *SAML) person(name string) (Person, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[name]
	return p, ok
}

// SigningKey is the key and certificate the provider signs with.
func (s *SAML) SigningKey() (crypto.PrivateKey, *x509.Certificate) {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.idp.IDP.Key, s.idp.IDP.Certificate
}

// SetSigningKey makes the provider sign with key; its metadata lists cert
// from then on, unless Publish fixed what it lists.
func (s *SAML) SetSigningKey(key crypto.PrivateKey, cert *x509.Certificate) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	s.idp.IDP.Key, s.idp.IDP.Certificate = key, cert
}

// Publish makes the metadata list exactly certs, whatever the provider
// signs with; with none, it lists the signing certificate again.
func (s *SAML) Publish(certs ...*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published = slices.Clone(certs)
}

// SetMetadataDown makes the metadata endpoint fail, or serve again.
func (s *SAML) SetMetadataDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// MetadataFetches counts the metadata documents served.
func (s *SAML) MetadataFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// serveMetadata runs with keyMu held shared.
func (s *SAML) serveMetadata(w http.ResponseWriter) {
	s.mu.Lock()
	down, certs := s.down, s.published
	if !down {
		s.fetches++
	}
	s.mu.Unlock()
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if len(certs) == 0 {
		certs = []*x509.Certificate{s.idp.IDP.Certificate}
	}
	md, err := s.metadata(certs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(md)
}

// MetadataWith is the provider's metadata listing certs as its signing
// certificates.
func (s *SAML) MetadataWith(t testing.TB, certs ...*x509.Certificate) []byte {
	t.Helper()
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	md, err := s.metadata(certs)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func (s *SAML) metadata(certs []*x509.Certificate) ([]byte, error) {
	ed := s.idp.IDP.Metadata()
	var kds []crewjam.KeyDescriptor
	for _, c := range certs {
		kds = append(kds, crewjam.KeyDescriptor{Use: "signing", KeyInfo: crewjam.KeyInfo{X509Data: crewjam.X509Data{
			X509Certificates: []crewjam.X509Certificate{{Data: base64.StdEncoding.EncodeToString(c.Raw)}}}}})
	}
	ed.IDPSSODescriptors[0].KeyDescriptors = kds
	return xml.Marshal(ed)
}

// RegisterSP registers a service provider by its metadata. Unless encrypt
// is set, the encryption key is left out of it, so that assertions come
// in the clear, as Azure AD and Okta send them by default.
func (s *SAML) RegisterSP(t testing.TB, metadata []byte, encrypt bool) {
	t.Helper()
	if !encrypt {
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(metadata); err != nil {
			t.Fatalf("service provider metadata: %v", err)
		}
		for _, kd := range doc.FindElements("//KeyDescriptor[@use='encryption']") {
			kd.Parent().RemoveChild(kd)
		}
		var err error
		if metadata, err = doc.WriteToBytes(); err != nil {
			t.Fatal(err)
		}
	}
	s.put(t, "/services/"+randomHex(8), "application/samlmetadata+xml", metadata)
}

// RegisterSPFrom fetches a service provider's metadata from metadataURL
// with client and registers it, as an administrator uploading keygate's
// /saml/metadata does.
func (s *SAML) RegisterSPFrom(t testing.TB, client *http.Client, metadataURL string, encrypt bool) {
	t.Helper()
	resp, err := client.Get(metadataURL)
	if err != nil {
		t.Fatalf("fetch service provider metadata: %v", err)
	}
	defer resp.Body.Close()
	md, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("fetch service provider metadata from %s: %s %v", metadataURL, resp.Status, err)
	}
	s.RegisterSP(t, md, encrypt)
}

// IdPInitiatedURL is where a browser starts a sign-in to the service
// provider spEntityID from the provider's side, as from a tile in the
// Okta or Azure portal: the response it sends answers no request.
func (s *SAML) IdPInitiatedURL(t testing.TB, spEntityID string) string {
	t.Helper()
	return s.shortcut(t, samlidp.Shortcut{ServiceProviderID: spEntityID})
}

// IdPInitiatedURLWithRelayState is IdPInitiatedURL for a sign-in whose
// response carries relayState, as Okta's "Default RelayState" and Azure's
// "Relay State" settings make it: a target the provider chose.
func (s *SAML) IdPInitiatedURLWithRelayState(t testing.TB, spEntityID, relayState string) string {
	t.Helper()
	return s.shortcut(t, samlidp.Shortcut{ServiceProviderID: spEntityID, RelayState: &relayState})
}

func (s *SAML) shortcut(t testing.TB, sc samlidp.Shortcut) string {
	t.Helper()
	name := "sp-" + randomHex(8)
	sc.Name = name
	body, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	s.put(t, "/shortcuts/"+name, "application/json", body)
	return s.URL + "/login/" + name
}

func (s *SAML) put(t testing.TB, path, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s at the SAML identity provider: %s", path, resp.Status)
	}
}

var loginFormTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Test identity provider</title></head><body>
<h1>Sign in</h1>
{{if .Toast}}<p id="toast">{{.Toast}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label>User name <input name="user" autocomplete="username"></label>
{{if .SAMLRequest}}<input type="hidden" name="SAMLRequest" value="{{.SAMLRequest}}">
<input type="hidden" name="RelayState" value="{{.RelayState}}">{{end}}
<button type="submit">Sign in</button>
</form></body></html>`))

// GetSession is the login step (crewjam's saml.SessionProvider). A
// request without a user name gets a form asking for one, which posts the
// request back; with a known user name the person is signed in. There is
// no password: the tests are about what keygate does with an assertion.
func (s *SAML) GetSession(w http.ResponseWriter, r *http.Request, req *crewjam.IdpAuthnRequest) *crewjam.Session {
	toast := ""
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil
		}
		if name := r.PostForm.Get("user"); name != "" {
			if p, ok := s.person(name); ok {
				return p.session()
			}
			toast = fmt.Sprintf("No person named %q here.", name)
		}
	}
	data := struct{ Toast, Action, SAMLRequest, RelayState string }{Toast: toast, Action: r.URL.Path}
	if len(req.RequestBuffer) > 0 {
		// An SP-initiated sign-in: the form posts the request back to the
		// SSO endpoint, as samlidp's own login form does.
		data.Action = s.idp.IDP.SSOURL.Path
		data.SAMLRequest, data.RelayState = base64.StdEncoding.EncodeToString(req.RequestBuffer), req.RelayState
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	loginFormTemplate.Execute(w, data)
	return nil
}

func (p Person) session() *crewjam.Session {
	now := time.Now()
	s := &crewjam.Session{
		ID: randomHex(16), CreateTime: now, ExpireTime: now.Add(time.Hour), Index: randomHex(16),
		NameID: p.NameID, UserName: p.UserName, UserEmail: p.Email, Groups: p.Groups,
	}
	if s.NameID == "" {
		s.NameID = p.UserName
	}
	attr := func(name string, values ...string) crewjam.Attribute {
		a := crewjam.Attribute{Name: name, NameFormat: "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"}
		for _, v := range values {
			a.Values = append(a.Values, crewjam.AttributeValue{Type: "xs:string", Value: v})
		}
		return a
	}
	for _, k := range sortedKeys(p.Tags) {
		s.CustomAttributes = append(s.CustomAttributes, attr(TagAttributePrefix+k, p.Tags[k]))
	}
	for _, k := range sortedKeys(p.Attributes) {
		s.CustomAttributes = append(s.CustomAttributes, attr(k, p.Attributes[k]...))
	}
	return s
}

// MakeAssertion is crewjam's default assertion with the person's
// authentication context, then the person's Mutate (crewjam's
// saml.AssertionMaker). crewjam signs what it returns.
func (s *SAML) MakeAssertion(req *crewjam.IdpAuthnRequest, session *crewjam.Session) error {
	if err := (crewjam.DefaultAssertionMaker{}).MakeAssertion(req, session); err != nil {
		return err
	}
	p, _ := s.person(session.UserName)
	ref := PasswordClassRef
	if p.MFA {
		ref = MFAClassRef
	}
	req.Assertion.AuthnStatements[0].AuthnContext.AuthnContextClassRef = &crewjam.AuthnContextClassRef{Value: ref}
	if p.Mutate != nil {
		p.Mutate(req.Assertion)
	}
	return nil
}

// KeyPair makes a self-signed RSA key pair, such as a new signing key for
// the provider or an attacker's.
func KeyPair(t testing.TB, cn string, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, cert, err := newKeyPair(cn, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func newKeyPair(cn string, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

// The helpers below alter a SAMLResponse the way attackers do, for the
// hostile tests: each takes the base64 form value a browser posts.

// EditResponse decodes a SAMLResponse, lets f change its XML, and encodes
// it again.
func EditResponse(t testing.TB, encoded string, f func(doc *etree.Document)) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	f(doc)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

// EditResponseText decodes a SAMLResponse, lets f change its text, and
// encodes it again; for changes no XML library would make, such as
// comments inside a value.
func EditResponseText(t testing.TB, encoded string, f func(string) string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString([]byte(f(string(raw))))
}

// AssertionOf is the response's assertion.
func AssertionOf(doc *etree.Document) *etree.Element {
	return doc.Root().SelectElement("Assertion")
}

// RemoveSignatures removes the signatures directly on el.
func RemoveSignatures(el *etree.Element) {
	for _, s := range el.SelectElements("Signature") {
		el.RemoveChild(s)
	}
}

// Unsign removes the signatures on the response and on its assertion.
func Unsign(doc *etree.Document) {
	RemoveSignatures(doc.Root())
	RemoveSignatures(AssertionOf(doc))
}

// ForgedAssertion is an unsigned copy of the response's assertion naming
// nameID instead: what a signature-wrapping attack slips in beside the
// signed one.
func ForgedAssertion(doc *etree.Document, nameID string) *etree.Element {
	a := AssertionOf(doc).Copy()
	RemoveSignatures(a)
	a.FindElement(".//NameID").SetText(nameID)
	return a
}

// CommentInNameID splits the NameID value with an XML comment and appends
// suffix: an SP whose signature check reads the text with the comment
// dropped and whose attribute reader stops at it sees two different
// people.
func CommentInNameID(t testing.TB, encoded, nameID, suffix string) string {
	t.Helper()
	return EditResponseText(t, encoded, func(s string) string {
		old := nameID + "</saml:NameID>"
		if !strings.Contains(s, old) {
			t.Fatalf("the response has no NameID %q", nameID)
		}
		return strings.Replace(s, old, nameID+"<!---->"+suffix+"</saml:NameID>", 1)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
