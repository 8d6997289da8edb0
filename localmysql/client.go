package localmysql

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"

	"github.com/go-sql-driver/mysql"
)

// Config is a go-sql-driver configuration for root on db ("" for none)
// over TCP, with TLS verified against CA when the server offers it. Each
// call returns a fresh copy for the caller to adjust; open it with
// sql.OpenDB(mysql.NewConnector(cfg)).
func (s *Server) Config(db string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = s.SuperUser, s.SuperPassword
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", s.Address(), db
	cfg.TLS = s.TLSConfig()
	return cfg
}

// open is a one-connection pool for a single helper call.
func (s *Server) open(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to mariadb: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// Exec runs sql (one or more statements) as root on db.
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	cfg := s.Config(db)
	cfg.MultiStatements = true
	pool, err := s.open(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.ExecContext(ctx, sql); err != nil {
		return fmt.Errorf("exec on %q: %w", db, err)
	}
	return nil
}

// Query runs query with args as root on db and returns the rows as text;
// NULL reads as "".
func (s *Server) Query(ctx context.Context, db, query string, args ...any) ([][]string, error) {
	pool, err := s.open(s.Config(db))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	return queryStrings(ctx, pool, query, args...)
}

func queryStrings(ctx context.Context, pool *sql.DB, query string, args ...any) ([][]string, error) {
	rows, err := pool.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("query %q: %w", query, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	return out, nil
}

// queryVersion logs in as root and reads the version; start-up polls it
// until the server is ready, so the driver's own logging of the refused
// attempts is silenced.
func (s *Server) queryVersion(ctx context.Context) (string, error) {
	cfg := s.Config("")
	cfg.Logger = log.New(io.Discard, "", 0)
	pool, err := s.open(cfg)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	rows, err := queryStrings(ctx, pool, "SELECT VERSION()")
	if err != nil {
		return "", err
	}
	return rows[0][0], nil
}
