package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/bench/internal/proc"
)

// myQuery is the MySQL runs' statement: pgbench's select-only script,
// one primary-key lookup of a random row.
const myQuery = "SELECT v FROM " + myTable + " WHERE id = ?"

// mysqlRun is the load of the MySQL runs. MariaDB has no pgbench, so this
// program is the client: clients goroutines, each with its own
// connection, run myQuery one after another for the duration, with
// go-sql-driver/mysql as a Go application would.
type mysqlRun struct {
	clients  int
	duration time.Duration
	// protocol is how each query is sent, named after pgbench -M: simple
	// is the text protocol, the driver putting the id into the text
	// (interpolateParams=true, one COM_QUERY); extended prepares, executes
	// and closes a statement for every query (go-sql-driver's default);
	// prepared prepares once per connection and executes it by id.
	protocol string
}

// run runs the load against e with c's password. Like pgbench.run, a failed
// or hung run is reported in the result, and the error is for an
// interruption.
func (l mysqlRun) run(ctx context.Context, e endpoint, m mode, c credentials) (runResult, error) {
	res := runResult{Engine: e.engine, Target: e.name, Mode: m}
	cfg, err := l.config(e, c.password)
	if err != nil {
		return res, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return res, fmt.Errorf("%s: %w", e.name, err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(l.clients)
	if m == steady {
		db.SetMaxIdleConns(l.clients)
	} else {
		// A connection handed back is closed: every query has its own.
		db.SetMaxIdleConns(-1)
	}
	// Generous, as for pgbench: connecting, and the last queries' tail.
	runCtx, cancel := context.WithTimeout(ctx, l.duration+time.Minute)
	defer cancel()

	cpuBefore := selfCPU()
	stats := make([]clientStats, l.clients)
	var ready, done sync.WaitGroup
	start := make(chan time.Time)
	for i := range stats {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			l.client(runCtx, db, m, &stats[i], &ready, start)
		}()
	}
	// Steady clients connect first; the clock starts once all have, as
	// pgbench's tps leaves out the initial connections.
	ready.Wait()
	began := time.Now()
	for range l.clients {
		start <- began
	}
	done.Wait()
	elapsed := time.Since(began)
	res.CPU.Driver = selfCPU() - cpuBefore

	failed := summarize(&res, stats, elapsed)
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		res.Error = fmt.Sprintf("the clients had not finished %s after a %s run and were stopped", l.duration+time.Minute, l.duration)
	case len(failed) > 0:
		res.Error = fmt.Sprintf("%d of %d clients failed and stopped; the first: %v", len(failed), l.clients, failed[0])
	case res.Transactions == 0:
		res.Error = "no query completed"
	}
	return res, nil
}

// client is one connection's worth of load. In steady mode it connects
// (and prepares) before it reports ready, and keeps that connection; in
// connect-per-query mode every query has a connection of its own, and its
// latency includes connecting and closing. A client stops at its first
// error, as pgbench's do.
func (l mysqlRun) client(ctx context.Context, db *sql.DB, m mode, s *clientStats, ready *sync.WaitGroup, start <-chan time.Time) {
	var conn *sql.Conn
	var stmt *sql.Stmt
	if m == steady {
		t0 := time.Now()
		conn, stmt, s.err = l.open(ctx, db, l.protocol == "prepared")
		s.connects, s.connect = 1, time.Since(t0)
		if conn != nil {
			defer conn.Close()
		}
		if stmt != nil {
			defer stmt.Close()
		}
	}
	ready.Done()
	began := <-start
	if s.err != nil {
		return
	}
	end := began.Add(l.duration)
	for time.Now().Before(end) {
		t0 := time.Now()
		if m == steady {
			s.err = lookup(ctx, conn, stmt)
		} else {
			s.err = l.connectAndLookup(ctx, db, s)
		}
		if s.err != nil {
			return
		}
		s.record(time.Since(t0))
	}
}

// connectAndLookup opens a connection, runs one query on it and closes
// it, adding the time to connect to s.
func (l mysqlRun) connectAndLookup(ctx context.Context, db *sql.DB, s *clientStats) error {
	t0 := time.Now()
	conn, _, err := l.open(ctx, db, false)
	if err != nil {
		return err
	}
	s.connects++
	s.connect += time.Since(t0)
	if err := lookup(ctx, conn, nil); err != nil {
		conn.Close()
		return err
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// open takes a connection from db, a new one unless steady clients
// returned theirs, and prepares myQuery on it if asked to.
func (l mysqlRun) open(ctx context.Context, db *sql.DB, prepare bool) (*sql.Conn, *sql.Stmt, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	if !prepare {
		return conn, nil, nil
	}
	stmt, err := conn.PrepareContext(ctx, myQuery)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("prepare: %w", err)
	}
	return conn, stmt, nil
}

// lookup reads one random row, through stmt when there is one.
func lookup(ctx context.Context, conn *sql.Conn, stmt *sql.Stmt) error {
	id := rand.IntN(myRows) + 1
	var row *sql.Row
	if stmt != nil {
		row = stmt.QueryRowContext(ctx, id)
	} else {
		row = conn.QueryRowContext(ctx, myQuery, id)
	}
	var v string
	if err := row.Scan(&v); err != nil {
		return fmt.Errorf("query id %d: %w", id, err)
	}
	return nil
}

// config is how the clients connect to e: TCP on loopback, TLS verified
// against e's CA for 127.0.0.1, the password in the handshake.
// allowCleartextPasswords stays off: keygate takes its token through
// caching_sha2_password's full authentication inside TLS.
func (l mysqlRun) config(e endpoint, password string) (*mysql.Config, error) {
	pool, err := proc.CAPool(e.caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.name, err)
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port))
	cfg.User, cfg.Passwd, cfg.DBName = e.user, password, e.database
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	cfg.InterpolateParams = l.protocol == "simple"
	cfg.Timeout = 10 * time.Second
	return cfg, nil
}

// checkMySQL connects to e once, the way the runs will, and counts the
// table's rows: it fails early and clearly on a setup mistake, and has
// keygate create the person's upstream user before anything is measured.
func checkMySQL(ctx context.Context, l mysqlRun, e endpoint) error {
	password, err := e.password(ctx)
	if err != nil {
		return fmt.Errorf("check %s %s: password: %w", e.engine, e.name, err)
	}
	cfg, err := l.config(e, password)
	if err != nil {
		return fmt.Errorf("check %s %s: %w", e.engine, e.name, err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("check %s %s: %w", e.engine, e.name, err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+myTable).Scan(&n); err != nil {
		return fmt.Errorf("check %s %s: %w", e.engine, e.name, err)
	}
	if n != myRows {
		return fmt.Errorf("check %s %s: %s has %d rows, want %d", e.engine, e.name, myTable, n, myRows)
	}
	return nil
}

// selfCPU is this program's CPU time so far (user + system, all threads),
// in seconds: the MySQL runs' client, plus the little the driver does
// besides.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
