package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// handshake runs one TLS handshake between a client with cache and a server
// configured by ServerTLS, and reports whether the client resumed.
func handshake(t *testing.T, a *Authority, cache tls.ClientSessionCache) bool {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(a.CAPEM())
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(c1, a.ServerTLS())
		err := s.Handshake()
		if err == nil {
			// A byte after the handshake makes the client read the
			// session ticket sent before it.
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	c := tls.Client(c2, &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: cache})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

// A client that keeps session tickets resumes on its next connection,
// although every connection gets a configuration of its own; a ticket is
// honoured for a day after its key is replaced, not after two.
func TestSessionResumption(t *testing.T) {
	now := time.Now()
	a, err := Open(t.TempDir(), []string{"localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	if handshake(t, a, cache) {
		t.Fatal("the first connection resumed a session")
	}
	if !handshake(t, a, cache) {
		t.Fatal("the second connection did not resume the first one's session")
	}

	if _, err := a.Maintain([]string{"localhost"}, now.Add(ticketKeyLifetime)); err != nil {
		t.Fatal(err)
	}
	// stale gets a ticket of the new key; cache holds one of the previous.
	stale := tls.NewLRUClientSessionCache(4)
	handshake(t, a, stale)
	if !handshake(t, a, cache) {
		t.Fatal("a ticket of the previous key was refused the day the key was replaced")
	}
	for _, day := range []time.Duration{2, 3} {
		if _, err := a.Maintain([]string{"localhost"}, now.Add(day*ticketKeyLifetime)); err != nil {
			t.Fatal(err)
		}
	}
	if handshake(t, a, stale) {
		t.Fatal("a ticket of a key replaced two days ago was honoured")
	}
}
