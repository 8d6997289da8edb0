package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/localpg"
	"github.com/keygate/keygate/server"
)

const sampleSchema = `
SET ROLE keygate_admin;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, country text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, country) VALUES ('Ada Lovelace', 'GB'), ('Grace Hopper', 'US'), ('Edsger Dijkstra', 'NL');
INSERT INTO orders (customer_id, amount) VALUES (1, 120.00), (2, 75.50), (3, 310.25), (1, 42.00);
`

// postgres is the demo on a throwaway PostgreSQL.
type postgres struct {
	pg *localpg.Server
}

var _ upstream = (*postgres)(nil)

func (p *postgres) product() string  { return "PostgreSQL" }
func (p *postgres) protocol() string { return "PostgreSQL" }
func (p *postgres) database() string { return "orders" }

func (p *postgres) start(ctx context.Context, r *run, adminPassword string) error {
	r.say("Starting a throwaway PostgreSQL from this machine's binaries")
	start := time.Now()
	var err error
	if p.pg, err = localpg.Start(ctx, localpg.Options{}); err != nil {
		return err
	}
	r.result("%s on %s (initdb into a temporary directory, %.1fs)", p.pg.Version, p.pg.Address(), time.Since(start).Seconds())

	r.say("Preparing the upstream: role keygate_admin (LOGIN CREATEROLE, pg_signal_backend, pg_read_all_stats), database orders, sample tables")
	for _, sql := range []string{
		fmt.Sprintf(`CREATE ROLE keygate_admin LOGIN CREATEROLE PASSWORD '%s'`, adminPassword),
		`GRANT pg_signal_backend, pg_read_all_stats TO keygate_admin`,
		`CREATE DATABASE orders OWNER keygate_admin`,
	} {
		if err := p.pg.Exec(ctx, "postgres", sql); err != nil {
			return err
		}
	}
	if err := p.pg.Exec(ctx, "orders", sampleSchema); err != nil {
		return err
	}
	r.result("tables customers (3 rows) and orders (4 rows), owned by keygate_admin")
	return nil
}

func (p *postgres) stop() {
	if p.pg != nil {
		p.pg.Stop()
	}
}

func (p *postgres) config(passwordEnv string) (entry, listenKey string) {
	return fmt.Sprintf(`  - name: orders
    engine: %s
    address: %s
    database: orders
    schemas: [public]
    tags: {environment: demo}
    tls: disable
    admin:
      user: keygate_admin
      password_env: %s
`, config.EnginePostgres, p.pg.Address(), passwordEnv), "postgres"
}

func (p *postgres) gatewayAddr(srv *server.Server) string { return srv.PostgresAddr() }

func (p *postgres) connect(ctx context.Context, addr, caFile, user, token string) (session, error) {
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=orders user=%s sslmode=verify-full sslrootcert=%s", host, port, user, caFile))
	if err != nil {
		return nil, err
	}
	cfg.Password = token
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return pgSession{c}, nil
}

func (p *postgres) sql() journeySQL {
	return journeySQL{
		whoAndCount: "SELECT session_user, (SELECT count(*) FROM orders)",
		insert:      "INSERT INTO orders (customer_id, amount) VALUES (2, 9.99)",
		escalate:    "SET ROLE keygate_admin",
		write:       []string{"INSERT INTO orders (customer_id, amount) VALUES (3, 18.50) RETURNING id, session_user"},
		sleep:       "SELECT pg_sleep(30)",
		activity:    "pg_stat_activity shows this role",
	}
}

func (p *postgres) message(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
	}
	if err == nil {
		return "succeeded"
	}
	return err.Error()
}

func (p *postgres) client(addr, caFile, user string) (passwordVar, command string) {
	host, port, _ := net.SplitHostPort(addr)
	return "PGPASSWORD", fmt.Sprintf(`psql "host=%s port=%s dbname=orders user=%s sslmode=verify-full sslrootcert=%s"`, host, port, user, caFile)
}

// pgSession is a connection through the PostgreSQL gateway.
type pgSession struct{ c *pgconn.PgConn }

func (s pgSession) queryRow(ctx context.Context, sql string) ([]string, error) {
	res := s.c.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	var out []string
	if len(res.Rows) > 0 {
		for _, v := range res.Rows[0] {
			out = append(out, string(v))
		}
	}
	return out, nil
}

func (s pgSession) Close(ctx context.Context) error { return s.c.Close(ctx) }
