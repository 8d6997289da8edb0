package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/localpg"
)

// Names on the upstream.
const (
	adminUser = "keygate_admin"
	benchDB   = "bench"
	// benchUnpooledDB is a copy of benchDB that the keygate without pools
	// serves (see upstreamsFor).
	benchUnpooledDB = "bench_unpooled"
	scale           = 10 // pgbench -i -s: 1,000,000 rows in pgbench_accounts
)

// startPostgres starts a throwaway PostgreSQL that takes TLS connections
// with the certificate in pkiDir and at least maxConns connections.
func startPostgres(ctx context.Context, pkiDir string, maxConns int) (*localpg.Server, error) {
	pg, err := localpg.Start(ctx, localpg.Options{Settings: map[string]string{"max_connections": strconv.Itoa(max(300, maxConns))}})
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := enableTLS(ctx, pg, pkiDir); err != nil {
		pg.Stop()
		return nil, err
	}
	return pg, nil
}

// enableTLS copies the server certificate into the server's directory,
// owned by the user PostgreSQL runs as (it refuses a key anyone else can
// read), and turns ssl on with a reload. The files only exist once
// localpg.Start has made the directory, so they cannot be start-up
// settings.
func enableTLS(ctx context.Context, pg *localpg.Server, pkiDir string) error {
	uid, gid, err := ownerOf(pg.Dir)
	if err != nil {
		return fmt.Errorf("enable postgres TLS: %w", err)
	}
	cert, key := filepath.Join(pg.Dir, "server.pem"), filepath.Join(pg.Dir, "server.key")
	if err := copyFile(filepath.Join(pkiDir, "server.pem"), cert, 0o644, uid, gid); err != nil {
		return fmt.Errorf("enable postgres TLS: %w", err)
	}
	if err := copyFile(filepath.Join(pkiDir, "server.key"), key, 0o600, uid, gid); err != nil {
		return fmt.Errorf("enable postgres TLS: %w", err)
	}
	// ALTER SYSTEM refuses to run in a transaction block, which a
	// multi-statement query is: one at a time.
	for _, sql := range []string{
		"ALTER SYSTEM SET ssl_cert_file = " + literal(cert),
		"ALTER SYSTEM SET ssl_key_file = " + literal(key),
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()",
	} {
		if err := pg.Exec(ctx, "postgres", sql); err != nil {
			return fmt.Errorf("enable postgres TLS: %w", err)
		}
	}
	// The reload is asynchronous: wait for a verified TLS connection.
	conn := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		pg.Host, pg.Port, pg.SuperUser, pg.SuperPassword, filepath.Join(pkiDir, "ca.pem"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgconn.Connect(ctx, conn)
		if err == nil {
			return c.Close(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("enable postgres TLS: no TLS connection 10s after reload: %w (log %s)", err, pg.LogFile())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prepareUpstream creates what a DBA would for keygate — the admin role
// and a database it owns — and loads pgbench's tables as that role, so
// that it owns them and can grant on them.
func prepareUpstream(ctx context.Context, pg *localpg.Server, pgbench, caFile, adminPassword string) error {
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE PASSWORD %s", adminUser, literal(adminPassword)),
		fmt.Sprintf("GRANT pg_signal_backend, pg_read_all_stats TO %s", adminUser),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", benchDB, adminUser),
	} {
		if err := pg.Exec(ctx, "postgres", sql); err != nil {
			return fmt.Errorf("prepare upstream: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(scale),
		"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", adminUser, benchDB)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+caFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i -s %d: %w\n%s", scale, err, out)
	}
	// Have the kernel write the loaded data out now rather than during
	// the first run.
	for _, sql := range []string{
		fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", benchUnpooledDB, benchDB, adminUser),
		"CHECKPOINT",
	} {
		if err := pg.Exec(ctx, "postgres", sql); err != nil {
			return fmt.Errorf("prepare upstream: %w", err)
		}
	}
	syscall.Sync()
	return nil
}

// ownerOf is the uid and gid that own path.
func ownerOf(path string) (uid, gid int, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("no owner information for %s", path)
	}
	return int(st.Uid), int(st.Gid), nil
}

// copyFile copies src to dst with mode, owned by uid:gid.
func copyFile(src, dst string, mode os.FileMode, uid, gid int) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return writeOwned(dst, b, mode, uid, gid)
}

// writeOwned writes a file with mode, owned by uid:gid. Changing the owner
// to oneself is allowed without privilege, so this works as root and not.
func writeOwned(path string, b []byte, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// postgresSetup is the throwaway PostgreSQL, ready for the runs.
type postgresSetup struct {
	server        *localpg.Server
	postmaster    int
	adminPassword string
}

// setupPostgres starts a throwaway PostgreSQL with TLS that takes
// maxConns connections, finds pgbench for bench and loads pgbench's tables.
func setupPostgres(ctx context.Context, w io.Writer, rep *report, bench *pgbenchRun, pkiDir, caFile string, maxConns int) (_ *postgresSetup, err error) {
	fmt.Fprintln(w, "Starting a throwaway PostgreSQL with TLS")
	pg, err := startPostgres(ctx, pkiDir, maxConns)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			pg.Stop()
		}
	}()
	rep.Versions.PostgreSQL = pg.Version
	postmaster, err := postmasterPID(filepath.Join(pg.Dir, "data"))
	if err != nil {
		return nil, err
	}
	if bench.bin, err = pgbenchBinary(pg.BinDir); err != nil {
		return nil, err
	}
	rep.Versions.Pgbench = commandVersion(ctx, bench.bin)
	adminPassword := randomHex(16)
	start := time.Now()
	if err := prepareUpstream(ctx, pg, bench.bin, caFile, adminPassword); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  %s on %s; pgbench -i -s %d as %s took %.1fs\n", pg.Version, pg.Address(), scale, adminUser, time.Since(start).Seconds())
	return &postgresSetup{server: pg, postmaster: postmaster, adminPassword: adminPassword}, nil
}

// benchPostgres runs pgbench against PostgreSQL directly, through
// pgbouncer when it is installed, and through the keygates, after
// measuring the pooled keygate's memory with idle connections held; then
// this program's load with many people connecting; then it scans the
// PostgreSQL and pgbouncer logs.
func benchPostgres(ctx context.Context, w io.Writer, rep *report, o options, bench pgbenchRun, pg *postgresSetup, pkiDir, caFile string, kgs []*keygate) (err error) {
	adminPW := func(context.Context) (string, error) { return pg.adminPassword, nil }
	adminPeople := fixedLogins(adminUser, pg.adminPassword)
	endpoints := []endpoint{{engine: enginePostgres, name: "direct", port: pg.server.Port, user: adminUser, database: benchDB, caFile: caFile,
		password: adminPW, people: adminPeople}}
	logs := []componentLog{{name: "postgres", path: pg.server.LogFile(), markers: postgresMarkers, benign: postgresBenign}}
	if bin, ferr := findPgbouncer(); ferr != nil {
		rep.Skipped = append(rep.Skipped, "pgbouncer: "+ferr.Error())
		fmt.Fprintf(w, "Skipping pgbouncer: %v\n", ferr)
	} else {
		fmt.Fprintln(w, "Starting pgbouncer")
		b, err := startPgbouncer(ctx, bin, pg.server, pkiDir, adminUser, pg.adminPassword, o.clients)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := b.close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		rep.Versions.PgBouncer = commandVersion(ctx, bin)
		fmt.Fprintf(w, "  %s on 127.0.0.1:%d, session pooling, as %s\n", rep.Versions.PgBouncer, b.port, adminUser)
		endpoints = append(endpoints, endpoint{engine: enginePostgres, name: "pgbouncer", port: b.port, user: adminUser, database: benchDB,
			caFile: caFile, password: adminPW, people: adminPeople, proc: b.Process})
		logs = append(logs, componentLog{name: "pgbouncer", path: b.LogPath(), markers: pgbouncerMarkers})
	}
	for _, kg := range kgs {
		endpoints = append(endpoints, endpoint{engine: enginePostgres, name: kg.name, port: kg.pgPort, user: kg.person, database: benchDB,
			caFile: kg.caFile, password: kg.tokenFor(benchDB), people: kg.peopleFor(benchDB), proc: kg.Process})
	}

	for _, e := range endpoints {
		if err := check(ctx, e); err != nil {
			return err
		}
	}
	// The default keygate's, the first: its memory per idle connection.
	held := endpoints[len(endpoints)-len(kgs)]
	fmt.Fprintf(w, "Holding %d idle TLS connections through %s to measure its memory per connection\n", o.idleConns, held.name)
	start := time.Now()
	if rep.KeygateHeld, err = holdConnections(ctx, held, o.idleConns); err != nil {
		return err
	}
	fmt.Fprintf(w, "  opened in %.1fs\n", rep.KeygateHeld.OpenSeconds)
	if err := waitPersonBackendsGone(ctx, w, pg.server); err != nil {
		return err
	}
	fmt.Fprintf(w, "  held phase took %.1fs\n", time.Since(start).Seconds())

	fmt.Fprintf(w, "Running pgbench -S -c %d -j %d -T %d, %d runs\n", bench.clients, bench.jobs, bench.seconds(), 2*o.runs*len(endpoints))
	if err := runAll(ctx, w, rep, bench, endpoints, []mode{steady, perTxn}, o.runs, postgresCPU(pg.postmaster)); err != nil {
		return err
	}

	fmt.Fprintf(w, "Making %d people on each keygate\n", o.people)
	start = time.Now()
	for _, kg := range kgs {
		if err := kg.provisionPeople(ctx, o.people); err != nil {
			return err
		}
	}
	for _, e := range endpoints[len(endpoints)-len(kgs):] {
		if err := checkPeople(ctx, e); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "  took %.1fs, with a first connection as each of them\n", time.Since(start).Seconds())
	load := peopleRun{clients: o.clients, duration: o.duration, protocol: o.protocol}
	fmt.Fprintf(w, "Running a new connection per transaction as %d people in turn (keygate; the admin user elsewhere), %d clients, %s, %d runs\n",
		o.people, o.clients, o.duration, o.runs*len(endpoints))
	if err := runAll(ctx, w, rep, load, endpoints, []mode{perTxnPeople}, o.runs, postgresCPU(pg.postmaster)); err != nil {
		return err
	}
	// pgbouncer's log goes with its directory: scan before it stops.
	return rep.scan(logs...)
}

// checkPeople connects to e once as each of its people, as check does for
// the one person: keygate creates each person's role on their first
// connection, which is set-up, not what the runs measure.
func checkPeople(ctx context.Context, e endpoint) error {
	people, err := e.people(ctx)
	if err != nil {
		return fmt.Errorf("check %s: %w", e.name, err)
	}
	return parallel(ctx, len(people.logins), provisionParallel, func(ctx context.Context, i int) error {
		who := people.logins[i]
		e.user = who.user
		c, err := connect(ctx, e, who.password)
		if err != nil {
			return fmt.Errorf("check %s as %s: %w", e.name, who.user, err)
		}
		_, qerr := c.Exec(ctx, "SELECT 1").ReadAll()
		cerr := c.Close(ctx)
		if qerr != nil {
			return fmt.Errorf("check %s as %s: %w", e.name, who.user, qerr)
		}
		if cerr != nil {
			return fmt.Errorf("check %s as %s: close: %w", e.name, who.user, cerr)
		}
		return nil
	})
}

// stateDatabase makes an empty state database for the keygate called
// name, owned by the admin user, on the benchmark's PostgreSQL, with a
// fresh secrets key: the state of a keygate server sharing its state, on
// the same machine as everything else.
func (p *postgresSetup) stateDatabase(ctx context.Context, name string) (*stateDB, error) {
	db := "state_" + strings.ReplaceAll(name, "-", "_")
	if err := p.server.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, adminUser)); err != nil {
		return nil, fmt.Errorf("state database for %s: %w", name, err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &stateDB{Node: name, key: base64.StdEncoding.EncodeToString(key),
		url: fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", adminUser, url.QueryEscape(p.adminPassword), p.server.Address(), db)}, nil
}
