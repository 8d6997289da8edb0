package localmysql

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := start(t, Options{TLS: true, Settings: map[string]string{"require-secure-transport": "ON"}})
	if !x509.NewCertPool().AppendCertsFromPEM(s.CA()) {
		t.Fatalf("CA() = %q, want a PEM certificate", s.CA())
	}

	// Exec and Query verify the server with the CA.
	rows, err := s.Query(ctx, "", "SHOW SESSION STATUS LIKE 'Ssl_version'")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || !strings.HasPrefix(rows[0][1], "TLSv1.") {
		t.Fatalf("Ssl_version = %v, want TLSv1.x", rows)
	}

	// The same password without TLS is refused: MariaDB says "access
	// denied" (1045) where MySQL 8 would say 3159.
	plain := s.Config("")
	plain.TLS = nil
	var me *mysql.MySQLError
	if err := openDB(t, plain).PingContext(ctx); !errors.As(err, &me) || me.Number != 1045 {
		t.Errorf("connection without TLS: %v, want access denied (1045) from require_secure_transport", err)
	}

	// A client that trusts another CA refuses the server's certificate.
	other := s.Config("")
	other.TLS = &tls.Config{RootCAs: x509.NewCertPool(), ServerName: s.Host}
	var unknown x509.UnknownAuthorityError
	if err := openDB(t, other).PingContext(ctx); !errors.As(err, &unknown) {
		t.Errorf("client with another CA: %v, want an unknown-authority error", err)
	}
}

func TestNoTLSByDefault(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	if s.CA() != nil || s.TLSConfig() != nil {
		t.Fatal("CA or TLSConfig set on a server started without TLS")
	}
	cfg := s.Config("")
	cfg.TLS = &tls.Config{InsecureSkipVerify: true}
	if err := openDB(t, cfg).PingContext(context.Background()); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("TLS client against a server without TLS: %v, want a TLS refusal", err)
	}
}
