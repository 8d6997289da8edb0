package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/config"
)

// A config without a mysql database binds no MySQL port: an install that
// fronts only PostgreSQL keeps working as it did, whatever holds 3307.
func TestNoMySQLListenerWithoutMySQLDatabases(t *testing.T) {
	holder, err := net.Listen("tcp", config.DefaultMySQLListen)
	if err != nil {
		t.Skipf("cannot hold %s for the test: %v", config.DefaultMySQLListen, err)
	}
	defer holder.Close()
	cfg := testConfig(t, "shutdown_grace: 1s\n")
	srv := runServer(t, cfg)
	if addr := srv.MySQLAddr(); addr != "" {
		t.Errorf("MySQLAddr = %q without a mysql database", addr)
	}
	h, _, err := Running(cfg.Resolve(cfg.DataDir))
	if err != nil || h.MySQL != "" {
		t.Errorf("lock holder %+v (%v): want no mysql address", h, err)
	}
}

// With a mysql database, the server listens on listen.mysql with the
// MySQL engine, records the address in data_dir's lock, and tells clients
// (db list) to dial it for that database and the PostgreSQL listener for
// the others.
func TestMySQLListener(t *testing.T) {
	dir := t.TempDir()
	// Nothing answers on port 1: the upstream check fails at once, and
	// the listener serves all the same.
	raw := fmt.Sprintf(`data_dir: %s
listen:
  api: 127.0.0.1:0
  postgres: 127.0.0.1:0
  mysql: 127.0.0.1:0
databases:
  - name: orders
    address: 127.0.0.1:1
    admin: {user: keygate_admin, password_env: KEYGATE_TEST_UNSET}
  - name: shop
    engine: mysql
    address: 127.0.0.1:1
    local_infile: true
    admin: {user: keygate_admin, password_env: KEYGATE_TEST_UNSET}
shutdown_grace: 1s
`, filepath.Join(dir, "data"))
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, cfg)
	addr := srv.MySQLAddr()
	if addr == "" || addr == srv.PostgresAddr() {
		t.Fatalf("MySQLAddr = %q (postgres %s)", addr, srv.PostgresAddr())
	}
	h, _, err := Running(cfg.Resolve(cfg.DataDir))
	if err != nil || h.MySQL != addr {
		t.Errorf("lock holder %+v (%v): want mysql %s", h, err, addr)
	}

	reach := api.ConfigReach(srv.cfg, srv.gatewayAddr)
	_, myPort, _ := net.SplitHostPort(addr)
	_, pgPort, _ := net.SplitHostPort(srv.PostgresAddr())
	if r, ok := reach("shop"); !ok || r.Engine != config.EngineMySQL || r.Gateway != net.JoinHostPort("localhost", myPort) {
		t.Errorf("reach(shop) = %+v, %v; want the MySQL listener", r, ok)
	}
	if r, ok := reach("orders"); !ok || r.Gateway != net.JoinHostPort("localhost", pgPort) {
		t.Errorf("reach(orders) = %+v, %v; want the PostgreSQL listener", r, ok)
	}

	// A MySQL server speaks first: the engine answers a new connection
	// with a packet (a greeting, or an error while the upstream is down).
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		t.Fatalf("no packet from the MySQL listener: %v", err)
	}
	if n := int(head[0]) | int(head[1])<<8 | int(head[2])<<16; n == 0 || head[3] != 0 {
		t.Errorf("first packet header % x: want a non-empty payload with sequence 0", head)
	}
}

func TestUpstreamConfigCarriesLocalInfile(t *testing.T) {
	cfg := &config.Config{}
	for _, on := range []bool{false, true} {
		d := config.Database{Name: "shop", Engine: config.EngineMySQL, LocalInfile: on}
		if got := UpstreamConfig(cfg, d, "pw").LocalInfile; got != on {
			t.Errorf("local_infile %v: upstream.Config.LocalInfile = %v", on, got)
		}
	}
}

// Shutting down closes the MySQL listener with the PostgreSQL one.
func TestShutdownClosesMySQLListener(t *testing.T) {
	dir := t.TempDir()
	raw := fmt.Sprintf(`data_dir: %s
listen: {api: 127.0.0.1:0, postgres: 127.0.0.1:0, mysql: 127.0.0.1:0}
databases:
  - {name: shop, engine: mysql, address: 127.0.0.1:1, admin: {user: a, password_env: KEYGATE_TEST_UNSET}}
shutdown_grace: 1s
`, filepath.Join(dir, "data"))
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	addr := srv.MySQLAddr()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after shutdown", addr)
	}
}
