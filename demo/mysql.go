package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/localmysql"
	"github.com/keygate/keygate/server"
	upmysql "github.com/keygate/keygate/upstream/mysql"
)

// mysqlDatabase is keygate's name of the demo's MariaDB database, whose
// upstream name is orders.
const mysqlDatabase = "orders_my"

// mysqlSetup is what a DBA runs as root: keygate's admin user with the
// privileges keygate checks for (upstream/mysql's check), and the orders
// database. %[1]s is the admin password.
const mysqlSetup = `
CREATE USER 'keygate_admin'@'%%' IDENTIFIED BY '%[1]s';
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'keygate_admin'@'%%';
GRANT SELECT ON mysql.* TO 'keygate_admin'@'%%';
CREATE DATABASE orders;
GRANT ALL PRIVILEGES ON orders.* TO 'keygate_admin'@'%%' WITH GRANT OPTION;
`

// mysqlSchema is the sample tables, in the orders database.
const mysqlSchema = `
CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, name text NOT NULL, country text NOT NULL);
CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id), amount decimal(10,2) NOT NULL, placed_at timestamp NOT NULL DEFAULT current_timestamp);
INSERT INTO customers (name, country) VALUES ('Ada Lovelace', 'GB'), ('Grace Hopper', 'US'), ('Edsger Dijkstra', 'NL');
INSERT INTO orders (customer_id, amount) VALUES (1, 120.00), (2, 75.50), (3, 310.25), (1, 42.00);
`

// mariaDB is the demo on a throwaway MariaDB.
type mariaDB struct {
	my *localmysql.Server
}

var _ upstream = (*mariaDB)(nil)

func (m *mariaDB) product() string  { return "MariaDB" }
func (m *mariaDB) protocol() string { return "MySQL" }
func (m *mariaDB) database() string { return mysqlDatabase }

func (m *mariaDB) start(ctx context.Context, r *run, adminPassword string) error {
	// Before anything is narrated: without a server to run, the demo
	// says what to install and stops.
	if _, err := localmysql.FindBinaries(); err != nil {
		return fmt.Errorf("keygate demo --engine mysql runs a throwaway MariaDB from this machine's binaries: %w", err)
	}
	r.say("Starting a throwaway MariaDB from this machine's binaries")
	start := time.Now()
	var err error
	if m.my, err = localmysql.Start(ctx, localmysql.Options{}); err != nil {
		return err
	}
	r.result("MariaDB %s on %s (mariadb-install-db into a temporary directory, %.1fs)", m.my.Version(), m.my.Address(), time.Since(start).Seconds())

	r.say("Preparing the upstream: user keygate_admin (CREATE USER, PROCESS, CONNECTION ADMIN; SELECT on mysql.*; ALL on orders.* WITH GRANT OPTION), database orders, sample tables")
	if err := m.my.Exec(ctx, "", fmt.Sprintf(mysqlSetup, adminPassword)); err != nil {
		return err
	}
	if err := m.my.Exec(ctx, "orders", mysqlSchema); err != nil {
		return err
	}
	r.result("tables customers (3 rows) and orders (4 rows); keygate knows the database as %s", mysqlDatabase)
	return nil
}

func (m *mariaDB) stop() {
	if m.my != nil {
		m.my.Stop()
	}
}

func (m *mariaDB) config(passwordEnv string) (entry, listenKey string) {
	return fmt.Sprintf(`  - name: %s
    engine: %s
    address: %s
    database: orders
    tags: {environment: demo}
    tls: disable
    admin:
      user: keygate_admin
      password_env: %s
`, mysqlDatabase, config.EngineMySQL, m.my.Address(), passwordEnv), "mysql"
}

func (m *mariaDB) gatewayAddr(srv *server.Server) string { return srv.MySQLAddr() }

// connect logs in with go-sql-driver/mysql: the person's keygate user
// name, the token as the password (caching_sha2_password inside TLS, no
// cleartext option needed) and keygate's database name, with TLS verified
// against keygate's CA.
func (m *mariaDB) connect(ctx context.Context, addr, caFile, user, token string) (session, error) {
	cfg, err := gatewayConfig(addr, caFile, user, token)
	if err != nil {
		return nil, err
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	return mySession{db: db, conn: conn}, nil
}

// gatewayConfig is the driver configuration for the gateway at addr.
func gatewayConfig(addr, caFile, user, token string) (*mysql.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gateway address %q: %w", addr, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("keygate's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("keygate's CA %s holds no certificate", caFile)
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName = "tcp", addr, user, token, mysqlDatabase
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	cfg.Timeout = 10 * time.Second
	// The driver logs broken connections itself; the narration says
	// what the person saw.
	cfg.Logger = log.New(io.Discard, "", 0)
	return cfg, nil
}

func (m *mariaDB) sql() journeySQL {
	return journeySQL{
		whoAndCount: "SELECT CURRENT_USER(), (SELECT count(*) FROM orders)",
		insert:      "INSERT INTO orders (customer_id, amount) VALUES (2, 9.99)",
		escalate:    "SET ROLE " + upmysql.RoleName(mysqlDatabase, access.Admin),
		write:       []string{"INSERT INTO orders (customer_id, amount) VALUES (3, 18.50)", "SELECT LAST_INSERT_ID(), CURRENT_USER()"},
		sleep:       "SELECT SLEEP(30)",
		activity:    "information_schema.PROCESSLIST shows this user",
	}
}

func (m *mariaDB) message(err error) string {
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return fmt.Sprintf("ERROR %d (%s): %s", myErr.Number, myErr.SQLState[:], myErr.Message)
	}
	if err == nil {
		return "succeeded"
	}
	return err.Error()
}

func (m *mariaDB) client(addr, caFile, user string) (passwordVar, command string) {
	host, port, _ := net.SplitHostPort(addr)
	return "MYSQL_PWD", fmt.Sprintf("mariadb --protocol=TCP --host=%s --port=%s --user=%s --database=%s --ssl-ca=%s --ssl-verify-server-cert",
		host, port, user, mysqlDatabase, caFile)
}

// mySession is a connection through the MySQL gateway, kept as one
// connection so that a statement sees what the previous one did
// (LAST_INSERT_ID).
type mySession struct {
	db   *sql.DB
	conn *sql.Conn
}

func (s mySession) queryRow(ctx context.Context, query string) ([]string, error) {
	rows, err := s.conn.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v.String
	}
	return out, rows.Close()
}

func (s mySession) Close(context.Context) error {
	return errors.Join(s.conn.Close(), s.db.Close())
}
