package localmysql

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/pki"
)

// serverTLS is the CA and certificate the server presents, issued by
// keygate's own pki package.
type serverTLS struct {
	dir   string
	caPEM []byte
	pool  *x509.CertPool
}

// newServerTLS issues a certificate for 127.0.0.1 and localhost and writes
// it, its key and the CA as PEM files in dir for mariadbd to read.
func newServerTLS(dir string) (*serverTLS, error) {
	a, err := pki.Open(filepath.Join(dir, "ca"), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("start mariadb: TLS certificate: %w", err)
	}
	cert, err := a.ServerTLS().GetCertificate(nil)
	if err != nil {
		return nil, fmt.Errorf("start mariadb: TLS certificate: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("start mariadb: TLS key: %w", err)
	}
	t := &serverTLS{dir: dir, caPEM: a.CAPEM(), pool: a.CAPool()}
	files := map[string][]byte{
		"ca.pem":   t.caPEM,
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("start mariadb: %w", err)
		}
	}
	return t, nil
}

// settings are the mariadbd options that turn TLS on.
func (t *serverTLS) settings() map[string]string {
	return map[string]string{
		"ssl-ca":   filepath.Join(t.dir, "ca.pem"),
		"ssl-cert": filepath.Join(t.dir, "cert.pem"),
		"ssl-key":  filepath.Join(t.dir, "key.pem"),
	}
}

// CA is the PEM bundle that verifies the server's certificate, or nil when
// the server was started without TLS.
func (s *Server) CA() []byte {
	if s.tls == nil {
		return nil
	}
	return append([]byte(nil), s.tls.caPEM...)
}

// TLSConfig is a client configuration that verifies the server's
// certificate for Host, or nil when the server was started without TLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.tls.pool, ServerName: s.Host, MinVersion: tls.VersionTLS12}
}
