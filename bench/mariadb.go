package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/localmysql"
)

// Names on the MariaDB upstream and in keygate. The admin user has the
// same name as on PostgreSQL (adminUser).
const (
	// myUpstreamDB is the database on MariaDB; myKeygateDB is keygate's
	// name for it, which people connect to.
	myUpstreamDB = "benchdb"
	myKeygateDB  = "benchdb_my"
	myTable      = "accounts"
	myRows       = 100_000
)

// myAdminGrants are exactly what keygate's admin user needs on MariaDB (as
// internal/testenv grants them): CREATE USER to create, lock and
// re-password person users; PROCESS to see their connections; CONNECTION
// ADMIN to kill them; SELECT on the mysql schema to read accounts and
// grants back; and every privilege on the database, with the right to
// grant it to the per-person users.
const myAdminGrants = "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %[1]s; " +
	"GRANT SELECT ON mysql.* TO %[1]s; " +
	"GRANT ALL PRIVILEGES ON `%[2]s`.* TO %[1]s WITH GRANT OPTION"

// startMariaDB starts a throwaway MariaDB that offers TLS with a CA of its
// own, and writes that CA to caFile for the direct clients to verify.
func startMariaDB(ctx context.Context, caFile string) (*localmysql.Server, error) {
	s, err := localmysql.Start(ctx, localmysql.Options{TLS: true})
	if err != nil {
		return nil, fmt.Errorf("start mariadb: %w", err)
	}
	if err := os.WriteFile(caFile, s.CA(), 0o644); err != nil {
		s.Stop()
		return nil, fmt.Errorf("start mariadb: write CA: %w", err)
	}
	return s, nil
}

// prepareMariaDB creates what a DBA would for keygate — the admin user
// with its grants and the database — and fills the table the runs read:
// myRows rows of an id and a 32-character text, all in InnoDB's buffer
// pool once inserted.
func prepareMariaDB(ctx context.Context, s *localmysql.Server, adminPassword string) error {
	admin := "'" + adminUser + "'@'%'"
	setup := fmt.Sprintf("CREATE USER %s IDENTIFIED BY '%s'; CREATE DATABASE `%s`; ", admin, adminPassword, myUpstreamDB) +
		fmt.Sprintf(myAdminGrants, admin, myUpstreamDB)
	if err := s.Exec(ctx, "", setup); err != nil {
		return fmt.Errorf("prepare mariadb: %w", err)
	}
	// seq_1_to_N is MariaDB's Sequence engine: the rows in one statement.
	load := fmt.Sprintf("CREATE TABLE %[1]s (id INT PRIMARY KEY, v TEXT NOT NULL); "+
		"INSERT INTO %[1]s SELECT seq, MD5(seq) FROM seq_1_to_%[2]d", myTable, myRows)
	if err := s.Exec(ctx, myUpstreamDB, load); err != nil {
		return fmt.Errorf("prepare mariadb: %w", err)
	}
	return nil
}

// mariadbPID is the server's process id, from the pid file localmysql has
// it write in its directory: mariadbd is one process, its connections are
// threads, so this is all of its CPU time.
func mariadbPID(s *localmysql.Server) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "mariadbd.pid"))
	if err != nil {
		return 0, fmt.Errorf("find mariadbd: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("find mariadbd: %s: %w", s.Dir, err)
	}
	return pid, nil
}

// mariadbSetup is the throwaway MariaDB, ready for the runs.
type mariadbSetup struct {
	server        *localmysql.Server
	pid           int
	caFile        string
	adminPassword string
}

// setupMariaDB starts a throwaway MariaDB with TLS, its CA in caFile, and
// creates the admin user and the table. It returns an error wrapping
// localmysql.ErrNoBinaries when MariaDB is not installed.
func setupMariaDB(ctx context.Context, w io.Writer, rep *report, caFile string) (_ *mariadbSetup, err error) {
	if _, err := localmysql.FindBinaries(); err != nil {
		return nil, err
	}
	fmt.Fprintln(w, "Starting a throwaway MariaDB with TLS")
	s, err := startMariaDB(ctx, caFile)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	rep.Versions.MariaDB = s.Version()
	pid, err := mariadbPID(s)
	if err != nil {
		return nil, err
	}
	adminPassword := randomHex(16)
	start := time.Now()
	if err := prepareMariaDB(ctx, s, adminPassword); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  MariaDB %s on %s; %d rows in %s.%s as root took %.1fs\n", s.Version(), s.Address(), myRows, myUpstreamDB, myTable, time.Since(start).Seconds())
	return &mariadbSetup{server: s, pid: pid, caFile: caFile, adminPassword: adminPassword}, nil
}

// benchMySQL runs the MySQL load against MariaDB directly and through
// the keygates' MySQL gateways, then scans MariaDB's log.
func benchMySQL(ctx context.Context, w io.Writer, rep *report, o options, load mysqlRun, my *mariadbSetup, kgs []*keygate) error {
	endpoints := []endpoint{
		{engine: engineMySQL, name: "direct", port: my.server.Port, user: adminUser, database: myUpstreamDB, caFile: my.caFile,
			password: func(context.Context) (string, error) { return my.adminPassword, nil }},
	}
	for _, kg := range kgs {
		endpoints = append(endpoints, endpoint{engine: engineMySQL, name: kg.name, port: kg.myPort, user: kg.person, database: myKeygateDB,
			caFile: kg.caFile, password: kg.tokenFor(myKeygateDB), proc: kg.Process})
	}
	rep.Settings.MySQL = &mysqlSettings{Query: myQuery, Protocol: load.protocol, InterpolateParams: load.protocol == "simple", Rows: myRows,
		DurationSeconds: int(load.duration.Round(time.Second) / time.Second), Clients: load.clients, TLS: "verify-full"}
	for _, e := range endpoints {
		if err := checkMySQL(ctx, load, e); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "Running the MySQL load (%s, %s protocol) with %d clients for %s, %d runs\n", myQuery, load.protocol, load.clients, load.duration, 2*o.runs*len(endpoints))
	if err := runAll(ctx, w, rep, load, endpoints, []mode{steady, perQuery}, o.runs, mariadbCPU(my.pid)); err != nil {
		return err
	}
	return rep.scan(componentLog{name: "mariadb", path: my.server.LogFile(), markers: mariadbMarkers})
}
