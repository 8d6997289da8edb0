package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/internal/testenv"
)

// mysqlPasswordEnv holds the MariaDB admin user's password for the server.
const mysqlPasswordEnv = "ORDERS_MY_ADMIN_PASSWORD"

// mysqlSchema is the sample schema of the MariaDB database behind
// orders_my.
const mysqlSchema = `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO items VALUES (1, 'widget');`

// startMySQL creates the MariaDB database behind orders_my, named
// <dbPrefix>_orders on the package's shared MariaDB, with mysqlSchema in
// it, and returns the MariaDB and the database's name. The database is
// dropped when the test ends, so a server with orders_my lives no longer
// than its test: use it with stopWithTest.
func startMySQL(t testing.TB, dbPrefix string) (*testenv.MariaDB, string) {
	t.Helper()
	my := testenv.StartMariaDB(t)
	db := dbPrefix + "_orders"
	// A run killed before its cleanup leaves the database behind.
	if err := my.Exec(context.Background(), "", "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
		t.Fatal(err)
	}
	my.CreateDatabase(t, db, mysqlSchema)
	return my, db
}

// withMySQL adds to the common config the MySQL gateway on port and the
// database orders_my, database db on my, and grants it wherever the
// common config grants orders. It is entered after the PostgreSQL
// databases, so that the edits serverOptions makes to orders' entry still
// find orders first.
func withMySQL(cfg string, port int, my *testenv.MariaDB, db, extra string) string {
	entry := fmt.Sprintf(`  - name: orders_my
    engine: mysql
    address: %s
    database: %s
    tags: {environment: prod, project: alpha}
    tls: prefer
    admin:
      user: %s
      password_env: %s
%s`, my.Address(), db, my.AdminUser, mysqlPasswordEnv, extra)
	return strings.NewReplacer(
		"\n  postgres: ", fmt.Sprintf("\n  mysql: 127.0.0.1:%d\n  postgres: ", port),
		"\npermission_sets:\n", "\n"+entry+"permission_sets:\n",
		"    databases: [orders]\n", "    databases: [orders, orders_my]\n",
	).Replace(cfg)
}

// mysqlGateway is the MySQL gateway's address and the file of keygate's
// CA, which its certificate is issued by.
func (s *kgServer) mysqlGateway(t testing.TB) (addr, caFile string) {
	t.Helper()
	if s.myPort == 0 {
		t.Fatal("this server has no MySQL gateway: start it with serverOptions.mysql")
	}
	return net.JoinHostPort("127.0.0.1", itoa(s.myPort)), s.caFile
}

// mysqlConfig is the go-sql-driver configuration a person uses: their
// keygate user name, the token as the password, keygate's database name,
// and TLS verified against keygate's CA.
func (s *kgServer) mysqlConfig(t testing.TB, user, db, token string) *mysql.Config {
	t.Helper()
	addr, caFile := s.mysqlGateway(t)
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName = "tcp", addr, user, token, db
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return cfg
}

// mysqlDB opens a pool through the MySQL gateway as user on db with
// token, closed when the test ends.
func (s *kgServer) mysqlDB(t testing.TB, user, db, token string) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(s.mysqlConfig(t, user, db, token))
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(c)
	t.Cleanup(func() { pool.Close() })
	return pool
}

// upstreamMySQL runs query as MariaDB's root on the database behind
// orders_my and returns the rows as text.
func (s *kgServer) upstreamMySQL(t testing.TB, query string) [][]string {
	t.Helper()
	rows, err := s.my.Query(context.Background(), s.myDB, query)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// A server started with a MariaDB database serves it on the MySQL gateway:
// db list sends clients there, and a person's token opens a session as
// their own upstream user, held to their level.
func TestMySQLHarness(t *testing.T) {
	s := startServerWith(t, "myharness", serverOptions{mysql: true, stopWithTest: true})
	s.addUser(t, "alice", "analysts")

	r := s.run(t, []string{"KEYGATE_SESSION=" + s.session(t, "alice")}, "db", "list", "--json")
	var dbs []api.DatabaseAccess
	if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || r.code != 0 {
		t.Fatalf("db list --json: exit %d %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	gateways := map[string]string{}
	for _, d := range dbs {
		gateways[d.Database] = d.Engine + " " + d.Gateway
	}
	if want := "mysql localhost:" + itoa(s.myPort); gateways["orders_my"] != want {
		t.Errorf("db list: orders_my is %q, want %q (all: %v)", gateways["orders_my"], want, gateways)
	}
	if want := "postgres localhost:" + itoa(s.pgPort); gateways["orders"] != want {
		t.Errorf("db list: orders is %q, want %q", gateways["orders"], want)
	}

	db := s.mysqlDB(t, "alice", "orders_my", s.token(t, "alice", "orders_my"))
	var name, user string
	if err := db.QueryRow("SELECT (SELECT name FROM items WHERE id = 1), CURRENT_USER()").Scan(&name, &user); err != nil {
		t.Fatalf("query through the MySQL gateway: %v", err)
	}
	if name != "widget" || user != "alice.ro@%" {
		t.Errorf("got %q as %q, want widget as alice.ro@%%", name, user)
	}
	if _, err := db.Exec("INSERT INTO items VALUES (2, 'gadget')"); err == nil {
		t.Error("alice, read-only, inserted a row")
	}
	if rows := s.upstreamMySQL(t, "SELECT count(*) FROM items"); rows[0][0] != "1" {
		t.Errorf("items upstream: %v rows, want 1", rows[0][0])
	}
}
