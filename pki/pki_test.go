package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string, hosts []string, at time.Time) *Authority {
	t.Helper()
	a, err := Open(dir, hosts, at)
	if err != nil {
		t.Fatalf("Open(%v, %v): %v", hosts, at, err)
	}
	return a
}

// leaf returns the server certificate the authority presents.
func leaf(t *testing.T, a *Authority) *x509.Certificate {
	t.Helper()
	c, err := a.ServerTLS().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func verify(a *Authority, cert *x509.Certificate, host string, at time.Time) error {
	_, err := cert.Verify(x509.VerifyOptions{
		DNSName:     host,
		Roots:       a.CAPool(),
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return fi.Mode().Perm()
}

func TestOpenCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	a := open(t, dir, []string{"localhost", "127.0.0.1"}, now)
	if !a.Renewed() {
		t.Error("first Open: Renewed() = false, want true (a certificate was issued)")
	}
	for name, want := range map[string]os.FileMode{
		CAFile:         0o644,
		CAKeyFile:      0o600,
		serverCertFile: 0o644,
		serverKeyFile:  0o600,
	} {
		if got := mode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("pki directory mode = %v, want 0700", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("pki directory holds %v, want exactly the four files", names)
	}

	// The CA file on disk is what CAPEM returns, and holds one CA certificate.
	onDisk, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, a.CAPEM()) {
		t.Error("ca.pem differs from CAPEM()")
	}
	block, rest := pem.Decode(onDisk)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("ca.pem is not a single certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, key usage %v", ca.IsCA, ca.KeyUsage)
	}
	if !ca.MaxPathLenZero || ca.MaxPathLen != 0 {
		t.Error("CA may sign intermediate CAs; want path length 0")
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", ca.PublicKey)
	}
	// The keys are PKCS#8 PEM.
	for _, name := range []string{CAKeyFile, serverKeyFile} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(raw)
		if b == nil || b.Type != "PRIVATE KEY" {
			t.Fatalf("%s is not a PEM private key", name)
		}
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// CAPEM returns a copy.
	p := a.CAPEM()
	p[0] ^= 0xff
	if !bytes.Equal(a.CAPEM(), onDisk) {
		t.Error("changing the slice CAPEM returned changed the authority")
	}
}

func TestServerCertificate(t *testing.T) {
	hosts := []string{"localhost", "127.0.0.1", "db.example.com", "::1", "10.0.0.5"}
	a := open(t, t.TempDir(), hosts, now)
	cert := leaf(t, a)

	if got, want := slices.Sorted(slices.Values(cert.DNSNames)), []string{"db.example.com", "localhost"}; !slices.Equal(got, want) {
		t.Errorf("DNS SANs = %q, want %q", got, want)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if want := []string{"10.0.0.5", "127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
	if len(cert.URIs) != 0 || len(cert.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v", cert.URIs, cert.EmailAddresses)
	}
	if cert.IsCA {
		t.Error("server certificate is a CA")
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want server auth only", cert.ExtKeyUsage)
	}
	if cert.NotAfter.After(now.Add(398*24*time.Hour)) || cert.NotAfter.Before(now.Add(365*24*time.Hour)) {
		t.Errorf("NotAfter = %v; want about 397 days after %v", cert.NotAfter, now)
	}
	if !cert.NotBefore.Before(now) {
		t.Errorf("NotBefore = %v, want before %v (clock skew)", cert.NotBefore, now)
	}

	// It chains to the CA.
	ca, err := x509.ParseCertificate(mustPEM(t, a.CAPEM()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server certificate not signed by the CA: %v", err)
	}
	if !bytes.Equal(cert.RawIssuer, ca.RawSubject) {
		t.Error("issuer does not name the CA")
	}

	for _, host := range []string{"localhost", "127.0.0.1", "db.example.com", "10.0.0.5", "::1"} {
		if err := verify(a, cert, host, now); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	for _, host := range []string{"example.com", "www.db.example.com", "127.0.0.2", "localhost.localdomain"} {
		if err := verify(a, cert, host, now); err == nil {
			t.Errorf("verify for %s succeeded", host)
		}
	}
	// Another CA's pool does not trust it.
	other := open(t, t.TempDir(), []string{"localhost"}, now)
	if err := verify(other, cert, "localhost", now); err == nil {
		t.Error("a foreign CA verified the server certificate")
	}
}

func mustPEM(t *testing.T, b []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

// TestTLSHandshake: a client trusting CAPool completes a handshake with a
// server using ServerTLS for a named host, and fails for another name.
func TestTLSHandshake(t *testing.T) {
	a := open(t, t.TempDir(), []string{"localhost", "127.0.0.1"}, time.Now())
	cfg := a.ServerTLS()
	if cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want at least TLS 1.2", cfg.MinVersion)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	dial := func(serverName string) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: a.CAPool(), ServerName: serverName})
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if err := dial(name); err != nil {
			t.Errorf("handshake for %s: %v", name, err)
		}
	}
	if err := dial("example.com"); err == nil {
		t.Error("handshake for example.com succeeded")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReopenKeepsCAAndCertificate(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"localhost", "127.0.0.1"}
	a := open(t, dir, hosts, now)
	caKey := readFile(t, filepath.Join(dir, CAKeyFile))
	serverPEM := readFile(t, filepath.Join(dir, serverCertFile))
	serverKey := readFile(t, filepath.Join(dir, serverKeyFile))

	for _, h := range [][]string{
		hosts,
		{"127.0.0.1", "localhost"},              // order does not matter
		{"localhost", "127.0.0.1", "localhost"}, // nor duplicates
	} {
		b := open(t, dir, h, now.Add(24*time.Hour))
		if b.Renewed() {
			t.Errorf("reopen with %v: Renewed() = true, want false", h)
		}
		if !bytes.Equal(b.CAPEM(), a.CAPEM()) {
			t.Errorf("reopen with %v changed the CA", h)
		}
		if !bytes.Equal(leaf(t, b).Raw, leaf(t, a).Raw) {
			t.Errorf("reopen with %v changed the server certificate", h)
		}
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, CAKeyFile)), caKey) ||
		!bytes.Equal(readFile(t, filepath.Join(dir, serverCertFile)), serverPEM) ||
		!bytes.Equal(readFile(t, filepath.Join(dir, serverKeyFile)), serverKey) {
		t.Error("reopen rewrote key or certificate files")
	}
}

func TestHostnameChangeReissues(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, []string{"localhost", "127.0.0.1"}, now)
	for _, hosts := range [][]string{
		{"localhost", "127.0.0.1", "gw.example.com"}, // added
		{"gw.example.com"},                           // removed
		{"gw2.example.com"},                          // replaced
		{"10.1.1.1"},                                 // DNS → IP
	} {
		b := open(t, dir, hosts, now)
		if !b.Renewed() {
			t.Errorf("hostnames %v: Renewed() = false, want true", hosts)
		}
		if !bytes.Equal(b.CAPEM(), a.CAPEM()) {
			t.Errorf("hostnames %v: the CA changed", hosts)
		}
		cert := leaf(t, b)
		var have []string
		have = append(have, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			have = append(have, ip.String())
		}
		slices.Sort(have)
		want := slices.Sorted(slices.Values(hosts))
		if !slices.Equal(have, want) {
			t.Errorf("SANs = %q, want exactly %q", have, want)
		}
		for _, h := range hosts {
			if err := verify(a, cert, h, now); err != nil {
				t.Errorf("new certificate for %s does not verify with the old CA pool: %v", h, err)
			}
		}
		// Opening again with the same names keeps it.
		if c := open(t, dir, hosts, now); c.Renewed() {
			t.Errorf("hostnames %v: second open renewed again", hosts)
		}
	}
	// The IP-only certificate no longer covers localhost.
	if err := verify(a, leaf(t, open(t, dir, []string{"10.1.1.1"}, now)), "localhost", now); err == nil {
		t.Error("certificate for 10.1.1.1 verified for localhost")
	}
}

func TestRenewalNearExpiry(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"localhost"}
	a := open(t, dir, hosts, now)
	first := leaf(t, a)

	// Comfortably before the renewal window: kept.
	early := first.NotAfter.Add(-renewBefore - 24*time.Hour)
	if b := open(t, dir, hosts, early); b.Renewed() || !bytes.Equal(leaf(t, b).Raw, first.Raw) {
		t.Errorf("Open %v before expiry renewed the certificate", first.NotAfter.Sub(early))
	}

	// Inside the window: renewed, valid well beyond the old expiry, same CA.
	late := first.NotAfter.Add(-renewBefore + time.Hour)
	b := open(t, dir, hosts, late)
	if !b.Renewed() {
		t.Fatalf("Open %v before expiry did not renew", first.NotAfter.Sub(late))
	}
	second := leaf(t, b)
	if !second.NotAfter.After(first.NotAfter.Add(300 * 24 * time.Hour)) {
		t.Errorf("renewed NotAfter = %v, old %v", second.NotAfter, first.NotAfter)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("renewed certificate reuses the serial number")
	}
	if !bytes.Equal(b.CAPEM(), a.CAPEM()) {
		t.Error("renewal changed the CA")
	}
	if err := verify(b, second, "localhost", late); err != nil {
		t.Errorf("renewed certificate: %v", err)
	}

	// After expiry: renewed too.
	expired := second.NotAfter.Add(time.Hour)
	if c := open(t, dir, hosts, expired); !c.Renewed() {
		t.Error("Open after expiry did not renew")
	} else if err := verify(c, leaf(t, c), "localhost", expired); err != nil {
		t.Errorf("certificate renewed after expiry: %v", err)
	}
}

// TestCertificateFromAnotherCAIsReplaced: if the CA is replaced (its files
// deleted), the old server certificate no longer chains and is re-issued.
func TestCertificateFromAnotherCAIsReplaced(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, []string{"localhost"}, now)
	for _, f := range []string{CAFile, CAKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	b := open(t, dir, []string{"localhost"}, now)
	if bytes.Equal(a.CAPEM(), b.CAPEM()) {
		t.Fatal("a new CA was not created")
	}
	if !b.Renewed() {
		t.Fatal("server certificate of the old CA was kept")
	}
	if err := verify(b, leaf(t, b), "localhost", now); err != nil {
		t.Errorf("new certificate does not verify with the new CA: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("no hostnames", func(t *testing.T) {
		if _, err := Open(t.TempDir(), nil, now); err == nil {
			t.Error("Open with no hostnames succeeded")
		}
	})
	t.Run("corrupt CA", func(t *testing.T) {
		dir := t.TempDir()
		open(t, dir, []string{"localhost"}, now)
		if err := os.WriteFile(filepath.Join(dir, CAFile), []byte("not a certificate"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, []string{"localhost"}, now); err == nil {
			t.Error("Open with a corrupt ca.pem succeeded")
		}
	})
	t.Run("CA key missing", func(t *testing.T) {
		dir := t.TempDir()
		open(t, dir, []string{"localhost"}, now)
		if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, []string{"localhost"}, now); err == nil {
			t.Error("Open without ca.key succeeded")
		}
	})
	t.Run("CA key of another CA", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		open(t, dir, []string{"localhost"}, now)
		open(t, other, []string{"localhost"}, now)
		if err := os.WriteFile(filepath.Join(dir, CAKeyFile), readFile(t, filepath.Join(other, CAKeyFile)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, []string{"localhost"}, now); err == nil {
			t.Error("Open with a mismatched CA key succeeded")
		}
	})
	t.Run("corrupt server certificate", func(t *testing.T) {
		dir := t.TempDir()
		open(t, dir, []string{"localhost"}, now)
		if err := os.WriteFile(filepath.Join(dir, serverCertFile), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		// A broken server certificate is an error rather than silently replaced.
		if _, err := Open(dir, []string{"localhost"}, now); err == nil {
			t.Error("Open with a corrupt server.pem succeeded")
		}
	})
}

// TestCAExpiry: the server certificate presented must verify at the time it
// is used, including when the CA itself reaches the end of its life.
func TestCAExpiry(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, []string{"localhost"}, now)
	ca, err := x509.ParseCertificate(mustPEM(t, a.CAPEM()))
	if err != nil {
		t.Fatal(err)
	}
	// Within the CA's last year, a new server certificate ends with the CA.
	late := ca.NotAfter.Add(-100 * 24 * time.Hour)
	os.Remove(filepath.Join(dir, serverCertFile))
	b := open(t, dir, []string{"localhost"}, late)
	if got := leaf(t, b).NotAfter; got.After(ca.NotAfter) {
		t.Errorf("server certificate expires %s, after its CA (%s)", got, ca.NotAfter)
	}
	// After the CA's end, Open refuses and says what to do.
	_, err = Open(dir, []string{"localhost"}, ca.NotAfter.Add(24*time.Hour))
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "move ca.pem and ca.key") {
		t.Fatalf("Open with an expired CA: %v", err)
	}
}

// A server that runs for a year renews its certificate without a restart,
// and the TLS configuration it handed out presents the new one.
func TestMaintainRenewsWhileRunning(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, []string{"localhost"}, now)
	cfg := a.ServerTLS()
	first := leaf(t, a)
	if renewed, err := a.Maintain([]string{"localhost"}, now.Add(24*time.Hour)); err != nil || renewed {
		t.Fatalf("Maintain a day later: renewed %v, %v", renewed, err)
	}
	later := first.NotAfter.Add(-renewBefore + time.Hour)
	renewed, err := a.Maintain([]string{"localhost"}, later)
	if err != nil || !renewed {
		t.Fatalf("Maintain near expiry: renewed %v, %v", renewed, err)
	}
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.After(first.NotAfter) {
		t.Fatalf("the handed-out config still presents a certificate expiring %s", c.Leaf.NotAfter)
	}
	if err := verify(a, c.Leaf, "localhost", later); err != nil {
		t.Fatalf("renewed certificate does not verify: %v", err)
	}
}
