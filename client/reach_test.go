package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/sso"
)

// keygateLike is a TLS server with keygate's sign-in endpoints (without
// sign-in set up) and its published CA bundle: a self-signed certificate
// of its own for keygate.test and 127.0.0.1, so that two of them do not
// trust each other.
func keygateLike(t *testing.T) (srv *httptest.Server, caFile string) {
	t.Helper()
	cert, caPEM := selfSigned(t)
	mux := http.NewServeMux()
	sso.New(sso.Options{}).Register(mux)
	mux.HandleFunc("GET /v1/ca.pem", func(w http.ResponseWriter, _ *http.Request) { w.Write(caPEM) })
	mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"user": "alice"}`))
	})
	srv = httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// The refused handshakes are the point of these tests.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "keygate-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// selfSigned makes a certificate that is its own CA, as a test stand-in
// for keygate's CA and server certificate.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keygate test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"keygate.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// calls are every kind of request the CLI makes: the API (client.do), the
// device flow that keygate login starts, and the CA bundle fetch that
// keygate configure checks with.
var calls = map[string]func(context.Context, *client.Client) error{
	"api": func(ctx context.Context, c *client.Client) error {
		_, err := c.WhoAmI(ctx)
		return err
	},
	"sign-in": func(ctx context.Context, c *client.Client) error {
		_, err := c.StartSignIn(ctx, "test")
		return err
	},
	"ca bundle": func(ctx context.Context, c *client.Client) error {
		_, err := c.CABundle(ctx)
		return err
	},
}

// eachCall runs every kind of request against server with caFile and
// checks the error with check.
func eachCall(t *testing.T, server, caFile string, check func(t *testing.T, err error)) {
	t.Helper()
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			c, err := client.New(server, caFile, "kgs_test")
			if err != nil {
				t.Fatal(err)
			}
			check(t, call(t.Context(), c))
		})
	}
}

func mustContainAll(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// Without --ca, keygate's own certificate is one this machine does not
// trust; the error says to pass --ca and where to get the bundle, instead
// of Go's "certificate signed by unknown authority".
func TestUntrustedCertificateSaysPassCA(t *testing.T) {
	srv, _ := keygateLike(t)
	eachCall(t, srv.URL, "", func(t *testing.T, err error) {
		mustContainAll(t, err,
			"keygate server at "+srv.URL+" presents a certificate this machine does not trust",
			"pass --ca FILE with keygate's CA bundle",
			"keygate ca --config keygate.yaml",
			srv.URL+"/v1/ca.pem",
			"KEYGATE_CA")
		var reach *client.ReachError
		if !errors.As(err, &reach) || reach.Err == nil {
			t.Errorf("error %v is not a ReachError with the TLS error inside", err)
		}
	})
}

// With a CA bundle that does not sign the server's certificate (another
// server's, or from before a CA rotation), the error names the bundle.
func TestWrongCABundleNamesIt(t *testing.T) {
	srv, _ := keygateLike(t)
	_, otherCA := keygateLike(t)
	eachCall(t, srv.URL, otherCA, func(t *testing.T, err error) {
		mustContainAll(t, err, "presents a certificate that the CA bundle "+otherCA+" does not sign", "pass --ca FILE", srv.URL+"/v1/ca.pem")
	})
}

// A URL with a host name the certificate does not cover gets the names it
// does cover and public_hostnames; the test certificate is for
// keygate.test and 127.0.0.1, not localhost.
func TestHostnameMismatchNamesValidHosts(t *testing.T) {
	srv, caFile := keygateLike(t)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	byName := "https://localhost:" + port
	eachCall(t, byName, caFile, func(t *testing.T, err error) {
		mustContainAll(t, err,
			"keygate server at "+byName+" presents a certificate for keygate.test, 127.0.0.1, not for localhost",
			"use one of those names in --server",
			"add localhost to public_hostnames")
	})
}

// A port where nothing listens gets a question about the server and its
// listen.api address, with the underlying error.
func TestConnectionRefusedSaysWhatToCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "https://" + addr
	eachCall(t, url, "", func(t *testing.T, err error) {
		mustContainAll(t, err,
			"nothing answers at "+url+": is keygate server running, and is this its listen.api address?",
			"connection refused")
	})
}

// With the right CA every kind of request gets through: the advice above
// is for failures alone. keygate login, against a server without sign-in,
// learns that as ErrNoSignIn.
func TestTrustedServerAnswers(t *testing.T) {
	srv, caFile := keygateLike(t)
	c, err := client.New(srv.URL, caFile, "kgs_test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if w, err := c.WhoAmI(ctx); err != nil || w.User != "alice" {
		t.Errorf("whoami = %+v, %v", w, err)
	}
	if b, err := c.CABundle(ctx); err != nil || !strings.HasPrefix(string(b), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CA bundle = %.40q, %v", b, err)
	}
	if _, err := c.StartSignIn(ctx, "test"); !errors.Is(err, client.ErrNoSignIn) {
		t.Errorf("sign-in on a server without sso: %v, want ErrNoSignIn", err)
	}
}

// CABundle refuses a server that is not keygate: no /v1/ca.pem there.
func TestCABundleRefusesOtherServers(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL, caFile, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CABundle(t.Context())
	mustContainAll(t, err, "404", "is "+srv.URL+" a keygate server")
}
