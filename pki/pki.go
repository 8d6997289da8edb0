// Package pki runs keygate's internal certificate authority: one ECDSA P-256
// CA, created on first start, that signs the certificate the gateway and API
// present. Clients verify keygate with the CA bundle, the way RDS clients
// verify with rds-ca-bundle.pem.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/atomicfile"
)

// File names inside the PKI directory.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca.key"
	serverCertFile = "server.pem"
	serverKeyFile  = "server.key"
)

// Lifetimes. The server certificate is renewed well before it expires, at
// start and by Maintain while the server runs.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 397 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
)

// Authority is the loaded CA and the server certificate it issued.
type Authority struct {
	dir     string
	caCert  *x509.Certificate
	caKey   *ecdsa.PrivateKey
	caPEM   []byte
	mu      sync.RWMutex // guards server and tickets
	server  tls.Certificate
	renewed bool
	// tickets is the configuration ServerTLS clones: it carries the
	// session ticket keys, newest first, so that a client may resume its
	// TLS session on a later connection (one ECDHE, no certificate
	// signature or chain to verify). The keys live in memory only and are
	// replaced daily by Maintain, the previous one kept for a day, so a
	// ticket outlives neither a restart nor two days.
	tickets    *tls.Config
	ticketKeys [][32]byte
	ticketKey  time.Time // when ticketKeys[0] was made
}

// Open loads the CA from dir, creating it on first use, and makes sure the
// server certificate covers hostnames and is not close to expiry. now is the
// current time (injectable for tests).
func Open(dir string, hostnames []string, now time.Time) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki directory: %w", err)
	}
	a := &Authority{dir: dir}
	if err := a.loadOrCreateCA(now); err != nil {
		return nil, err
	}
	if err := a.rotateTicketKeys(now); err != nil {
		return nil, err
	}
	if err := a.loadOrIssueServer(hostnames, now); err != nil {
		return nil, err
	}
	return a, nil
}

// CAPEM is the CA bundle in PEM form.
func (a *Authority) CAPEM() []byte { return slices.Clone(a.caPEM) }

// CAPool is a pool holding the CA, for clients of keygate.
func (a *Authority) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.caCert)
	return p
}

// CAExpires is when the CA stops being valid; the server warns a year ahead.
func (a *Authority) CAExpires() time.Time { return a.caCert.NotAfter }

// Renewed reports whether Open issued a new server certificate.
func (a *Authority) Renewed() bool { return a.renewed }

// ServerTLS is the TLS configuration the gateway and API listen with.
func (a *Authority) ServerTLS() *tls.Config {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tickets.Clone()
}

// ticketKeyLifetime is how long a session ticket key issues tickets.
const ticketKeyLifetime = 24 * time.Hour

// rotateTicketKeys puts a new session ticket key first, keeping the
// previous one to accept the tickets it issued. a.mu is held, or a is not
// shared yet.
func (a *Authority) rotateTicketKeys(now time.Time) error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	keys := [][32]byte{key}
	if len(a.ticketKeys) > 0 {
		keys = append(keys, a.ticketKeys[0])
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Looked up per handshake, so a certificate Maintain renews is
		// used at once.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			a.mu.RLock()
			defer a.mu.RUnlock()
			return &a.server, nil
		},
	}
	cfg.SetSessionTicketKeys(keys)
	a.tickets, a.ticketKeys, a.ticketKey = cfg, keys, now
	return nil
}

// Maintain renews the server certificate when it is close to expiry, and
// the session ticket key when it is a day old; the server calls it daily.
// It reports whether it issued a new certificate.
func (a *Authority) Maintain(hostnames []string, now time.Time) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.ticketKey) >= ticketKeyLifetime {
		if err := a.rotateTicketKeys(now); err != nil {
			return false, err
		}
	}
	if a.serverStillGood(a.server.Leaf, hostnames, now) {
		return false, nil
	}
	if err := a.issueServer(hostnames, now); err != nil {
		return false, err
	}
	return true, nil
}

func (a *Authority) loadOrCreateCA(now time.Time) error {
	certPEM, err := os.ReadFile(filepath.Join(a.dir, CAFile))
	if errors.Is(err, fs.ErrNotExist) {
		return a.createCA(now)
	}
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(a.dir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load CA from %s: %w", a.dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("load CA from %s: key is not ECDSA", a.dir)
	}
	if now.After(pair.Leaf.NotAfter) {
		return fmt.Errorf("keygate's internal CA in %s expired on %s: move ca.pem and ca.key out of that directory to have a new CA made at the next start, then give clients the new bundle (keygate ca)",
			a.dir, pair.Leaf.NotAfter.Format(time.DateOnly))
	}
	a.caCert, a.caKey, a.caPEM = pair.Leaf, key, certPEM
	return nil
}

func (a *Authority) createCA(now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"keygate"}, CommonName: "keygate internal CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse CA certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeKey(filepath.Join(a.dir, CAKeyFile), key); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(a.dir, CAFile), certPEM, 0o644); err != nil {
		return err
	}
	a.caCert, a.caKey, a.caPEM = cert, key, certPEM
	return nil
}

func (a *Authority) loadOrIssueServer(hostnames []string, now time.Time) error {
	pair, err := tls.LoadX509KeyPair(filepath.Join(a.dir, serverCertFile), filepath.Join(a.dir, serverKeyFile))
	if err == nil && a.serverStillGood(pair.Leaf, hostnames, now) {
		a.server = pair
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("load server certificate: %w", err)
	}
	return a.issueServer(hostnames, now)
}

// serverStillGood reports whether cert was issued by this CA, names exactly
// the configured hostnames and is not close to expiry.
func (a *Authority) serverStillGood(cert *x509.Certificate, hostnames []string, now time.Time) bool {
	if cert == nil || cert.CheckSignatureFrom(a.caCert) != nil || now.Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	var have []string
	have = append(have, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	want := normalizeHosts(hostnames)
	slices.Sort(have)
	return slices.Equal(have, want)
}

func normalizeHosts(hostnames []string) []string {
	var out []string
	for _, h := range hostnames {
		if ip := net.ParseIP(h); ip != nil {
			out = append(out, ip.String())
			continue
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (a *Authority) issueServer(hostnames []string, now time.Time) error {
	if len(hostnames) == 0 {
		return errors.New("issue server certificate: public_hostnames is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	// Never outlive the CA that vouches for the certificate.
	notAfter := now.Add(serverLifetime)
	if notAfter.After(a.caCert.NotAfter) {
		notAfter = a.caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"keygate"}, CommonName: hostnames[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range normalizeHosts(hostnames) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, &key.PublicKey, a.caKey)
	if err != nil {
		return fmt.Errorf("create server certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeKey(filepath.Join(a.dir, serverKeyFile), key); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(a.dir, serverCertFile), certPEM, 0o644); err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(a.dir, serverCertFile), filepath.Join(a.dir, serverKeyFile))
	if err != nil {
		return fmt.Errorf("load issued server certificate: %w", err)
	}
	a.server, a.renewed = pair, true
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
