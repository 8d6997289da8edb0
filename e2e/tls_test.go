package e2e

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A client that keeps TLS session tickets (pgjdbc does, and Go clients
// with a ClientSessionCache) resumes its TLS session when it connects to
// the PostgreSQL gateway again.
func TestGatewayTLSResumption(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "tess", "analysts")
	tok := s.token(t, "tess", "orders")
	cache := tls.NewLRUClientSessionCache(4)
	var resumed []bool
	for range 2 {
		cfg, err := pgconn.ParseConfig(s.connString("tess", "orders"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = tok
		cfg.TLSConfig.ClientSessionCache = cache
		c, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		one(t, c, "SELECT 1")
		tc, ok := c.Conn().(*tls.Conn)
		if !ok {
			t.Fatalf("connection is %T, not TLS", c.Conn())
		}
		resumed = append(resumed, tc.ConnectionState().DidResume)
		c.Close(context.Background())
	}
	if resumed[0] || !resumed[1] {
		t.Fatalf("resumed = %v, want [false true]", resumed)
	}
}
