// Command bench measures keygate's PostgreSQL gateway against a direct TLS
// connection to PostgreSQL and against pgbouncer, and its MySQL gateway
// against a direct TLS connection to MariaDB, with and without keygate's
// per-person upstream pools, all in one run on throwaway servers, and
// prints the medians of repeated runs and their ratios: point selects over
// persistent connections, with a new connection per transaction, and with
// a new connection per transaction for each of many people in turn; the
// latency percentiles; and keygate's memory.
//
// bench/run.sh installs what is missing, builds keygate and runs this; see
// bench/README.md.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/localmysql"
	"github.com/keygate/keygate/pki"
)

// stopGrace is how long keygate and pgbouncer get to exit after SIGTERM.
const stopGrace = 20 * time.Second

type options struct {
	keygateBin string
	duration   time.Duration
	clients    int
	protocol   string
	outDir     string
	// idleConns is how many idle connections are held through keygate
	// to measure its memory per connection.
	idleConns int
	// engines are the upstreams measured: postgres, mysql or both.
	engines map[string]bool
	// runs is how many times each measurement is repeated; the table
	// shows the medians.
	runs int
	// people is how many distinct people connect in the
	// connect-per-txn-people runs.
	people int
	// state is where the keygates keep their state: sqlite (data_dir,
	// the default) or postgres (a database of their own on the
	// benchmark's PostgreSQL, as servers sharing one state do).
	state string
}

func main() {
	var o options
	var engines string
	flag.StringVar(&o.keygateBin, "keygate", "", "the keygate binary to benchmark (bench/run.sh builds it)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each run lasts (pgbench -T)")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients (pgbench -c)")
	flag.StringVar(&o.protocol, "protocol", "simple", "how the clients send their queries: simple, extended or prepared (pgbench -M; see README for MySQL)")
	flag.IntVar(&o.idleConns, "idle-conns", defaultIdleConns, "idle TLS connections held through keygate to measure its memory per connection (each holds a PostgreSQL backend)")
	flag.IntVar(&o.runs, "runs", 3, "how many times each measurement is repeated, the targets taking turns; the table shows the medians")
	flag.IntVar(&o.people, "people", 200, "distinct people connecting, round-robin, in the connect-per-txn-people runs")
	flag.StringVar(&o.outDir, "out", filepath.Join("bench", "out"), "directory for the JSON results")
	flag.StringVar(&o.state, "state", "sqlite", "where the keygates keep their state: sqlite (data_dir) or postgres (a state database on the benchmark's PostgreSQL, which needs -engines with postgres)")
	flag.StringVar(&engines, "engines", enginePostgres+","+engineMySQL, "the engines to measure, comma-separated: postgres, mysql (MariaDB)")
	flag.Parse()
	o.engines = map[string]bool{}
	for _, e := range strings.Split(engines, ",") {
		o.engines[strings.TrimSpace(e)] = true
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted; everything it started is stopped and removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o options) validate() error {
	if o.keygateBin == "" {
		return errors.New("-keygate is required: run bench/run.sh, or build keygate with `go build -o /tmp/keygate ./cmd/keygate` and pass -keygate /tmp/keygate")
	}
	if _, err := os.Stat(o.keygateBin); err != nil {
		return fmt.Errorf("-keygate: %w", err)
	}
	if o.duration < time.Second {
		return fmt.Errorf("-duration %s: at least 1s", o.duration)
	}
	switch o.protocol {
	case "simple", "extended", "prepared":
	default:
		return fmt.Errorf("-protocol %q: use simple, extended or prepared", o.protocol)
	}
	if o.clients < 1 || o.clients > 250 {
		return fmt.Errorf("-clients %d: between 1 and 250 (PostgreSQL and MariaDB run with max_connections=300)", o.clients)
	}
	if o.idleConns < 1 || o.idleConns > 100000 {
		return fmt.Errorf("-idle-conns %d: between 1 and 100000", o.idleConns)
	}
	if o.runs < 1 || o.runs > 100 {
		return fmt.Errorf("-runs %d: between 1 and 100", o.runs)
	}
	switch {
	case o.state == "postgres" && !o.engines[enginePostgres]:
		return errors.New("-state postgres keeps the state on the benchmark's PostgreSQL: add postgres to -engines")
	case o.state != "sqlite" && o.state != "postgres":
		return fmt.Errorf("-state %q: use sqlite or postgres", o.state)
	}
	if o.people < 1 || o.people > 10000 {
		return fmt.Errorf("-people %d: between 1 and 10000", o.people)
	}
	for e := range o.engines {
		if e != enginePostgres && e != engineMySQL {
			return fmt.Errorf("-engines: unknown engine %q: use postgres, mysql or postgres,mysql", e)
		}
	}
	return nil
}

// run sets everything up, runs the benchmark, reports, and takes
// everything down again, also when ctx is cancelled.
func run(ctx context.Context, o options, w io.Writer) (err error) {
	bench := pgbenchRun{clients: o.clients, jobs: min(2, o.clients), duration: o.duration, protocol: o.protocol}
	load := mysqlRun{clients: o.clients, duration: o.duration, protocol: o.protocol}
	rep := newReport(bench, o.runs, o.people)
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	defer os.RemoveAll(dir)

	// One certificate for PostgreSQL and pgbouncer, so that the direct
	// and pgbouncer paths are verified the same way keygate's is.
	pkiDir := filepath.Join(dir, "pki")
	if _, err := pki.Open(pkiDir, []string{"127.0.0.1", "localhost"}, time.Now()); err != nil {
		return fmt.Errorf("issue certificate: %w", err)
	}
	caFile := filepath.Join(pkiDir, pki.CAFile)

	if proc.Busy(rep.Machine.LoadBefore) {
		fmt.Fprintf(w, "WARNING: load average is %s: other work is running, and will skew the numbers\n", rep.Machine.LoadBefore)
	}
	rep.Settings.State = o.state
	var dbs []upstreamDB
	var pg *postgresSetup
	if o.engines[enginePostgres] {
		if err := raiseFileLimit(w, o.idleConns); err != nil {
			return err
		}
		if pg, err = setupPostgres(ctx, w, rep, &bench, pkiDir, caFile, o.idleConns+o.clients+50); err != nil {
			return err
		}
		defer pg.server.Stop()
		dbs = append(dbs, upstreamDB{Name: benchDB, Engine: enginePostgres, Address: pg.server.Address(), Database: benchDB,
			PasswordEnv: pgPasswordEnv, password: pg.adminPassword})
	}
	var my *mariadbSetup
	if o.engines[engineMySQL] {
		my, err = setupMariaDB(ctx, w, rep, filepath.Join(dir, "mariadb-ca.pem"))
		switch {
		case errors.Is(err, localmysql.ErrNoBinaries):
			rep.Skipped = append(rep.Skipped, "mysql: "+err.Error())
			fmt.Fprintf(w, "Skipping MySQL: %v\n", err)
		case err != nil:
			return err
		default:
			defer my.server.Stop()
			dbs = append(dbs, upstreamDB{Name: myKeygateDB, Engine: engineMySQL, Address: my.server.Address(), Database: myUpstreamDB,
				PasswordEnv: myPasswordEnv, password: my.adminPassword})
		}
	}
	if len(dbs) == 0 {
		return errors.New("nothing to measure: MariaDB is not installed, and -engines leaves out postgres")
	}

	// Two keygates in front of the same upstreams, one with the default
	// per-person pools and one without, so that each one's CPU time and
	// memory are its own.
	var kgs [2]*keygate
	for i, pooled := range []bool{true, false} {
		name := keygateName(pooled)
		fmt.Fprintf(w, "Starting %s\n", name)
		var state *stateDB
		if o.state == "postgres" {
			if state, err = pg.stateDatabase(ctx, name); err != nil {
				return err
			}
		}
		kg, kerr := startKeygate(ctx, o.keygateBin, filepath.Join(dir, name), name, pooled, upstreamsFor(dbs, pooled), state)
		if kerr != nil {
			return kerr
		}
		defer func() {
			if serr := kg.Stop(stopGrace); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
		kgs[i] = kg
		rep.Versions.Keygate = kg.version(ctx)
		fmt.Fprintf(w, "  %s, person %q in %s (ro)", rep.Versions.Keygate, kg.person, personGroup)
		if pg != nil {
			fmt.Fprintf(w, ", PostgreSQL gateway on 127.0.0.1:%d", kg.pgPort)
		}
		if my != nil {
			fmt.Fprintf(w, ", MySQL gateway on 127.0.0.1:%d", kg.myPort)
		}
		fmt.Fprintln(w)
	}

	if pg != nil {
		if err := benchPostgres(ctx, w, rep, o, bench, pg, pkiDir, caFile, kgs[:]); err != nil {
			return err
		}
	}
	if my != nil {
		if err := benchMySQL(ctx, w, rep, o, load, my, kgs[:]); err != nil {
			return err
		}
	}

	rep.Machine.LoadAfter = proc.LoadAverage()
	for _, kg := range kgs {
		if err := rep.scan(componentLog{name: kg.name, path: kg.LogPath(), markers: keygateMarkers}); err != nil {
			return err
		}
	}
	rep.finish()
	rep.print(w)
	path, err := rep.save(o.outDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRaw results: %s\n", path)
	return nil
}

// upstreamsFor is dbs as the keygate with or without pools serves them.
// Each keygate ends the backends of keygate-managed roles in its upstream
// databases that it did not open, so the keygate without pools reaches a
// copy of the PostgreSQL database; MariaDB's connections are told apart
// by user, and the two keygates' people differ.
func upstreamsFor(dbs []upstreamDB, pooled bool) []upstreamDB {
	out := slices.Clone(dbs)
	for i := range out {
		if !pooled && out[i].Engine == enginePostgres {
			out[i].Database = benchUnpooledDB
		}
	}
	return out
}

// loader is a run's client: pgbench, or one of this program's loads.
type loader interface {
	run(ctx context.Context, e endpoint, m mode, c credentials) (runResult, error)
}

// credentials are what a run's clients log in with: one password, or for
// the connect-per-txn-people runs a set of people.
type credentials struct {
	password string
	people   *loginSet
}

// runAll runs l against every endpoint in every mode, steady first, runs
// times each with the endpoints taking turns, so that a drift in the
// machine's speed affects all of them alike, and adds the results to rep.
func runAll(ctx context.Context, w io.Writer, rep *report, l loader, endpoints []endpoint, modes []mode, runs int, server serverCPU) error {
	for _, m := range modes {
		for run := 1; run <= runs; run++ {
			for _, e := range endpoints {
				res, err := measure(ctx, l, e, m, server)
				if err != nil {
					return err
				}
				res.Run = run
				status := fmt.Sprintf("%.0f tps, p99 %.2f ms", res.TPS, res.LatencyP99Ms)
				if res.Error != "" {
					// The whole error is printed below the table.
					first, _, _ := strings.Cut(res.Error, "\n")
					status = "FAILED: " + first
				}
				fmt.Fprintf(w, "  %-5s %-16s %-22s run %d/%d  %s\n", e.engine, e.name, m, run, runs, status)
				rep.Runs = append(rep.Runs, res)
			}
		}
	}
	return nil
}

// measure runs l against e, and accounts for the CPU time the client, the
// server, the proxy and everything else used meanwhile, and for the
// proxy's memory.
func measure(ctx context.Context, l loader, e endpoint, m mode, server serverCPU) (runResult, error) {
	var c credentials
	var err error
	if m == perTxnPeople {
		c.people, err = e.people(ctx)
	} else {
		c.password, err = e.password(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return runResult{}, ctx.Err()
		}
		// keygate has refused a token or is gone: a failed run.
		res := runResult{Engine: e.engine, Target: e.name, Mode: m, Error: "no credentials: " + err.Error()}
		if e.proc != nil {
			res.Error += "\n" + e.name + "'s log ends:\n" + e.proc.LogTail()
		}
		return res, nil
	}
	proxyPID := 0
	if e.proc != nil {
		proxyPID = e.proc.Pid()
	}
	before, err := takeCPU(server, proxyPID)
	if err != nil {
		return runResult{}, err
	}
	var mem *sampler
	if proxyPID != 0 {
		if mem, err = startSampling(proxyPID); err != nil {
			return runResult{}, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	start := time.Now()
	res, err := l.run(ctx, e, m, c)
	wall := time.Since(start)
	if err != nil {
		if mem != nil {
			mem.finish()
		}
		return res, err
	}
	if after, err := takeCPU(server, proxyPID); err != nil {
		res.Error = cmp.Or(res.Error, "after the run: "+err.Error())
	} else {
		serverTime := after.server - before.server
		if e.engine == engineMySQL {
			res.CPU.MariaDB = serverTime
		} else {
			res.CPU.Postgres = serverTime
		}
		res.CPU.Machine = after.machine - before.machine
		res.CPU.Proxy = after.proxy - before.proxy
		res.CPU.Others = max(0, res.CPU.Machine-res.CPU.Pgbench-res.CPU.Driver-serverTime-res.CPU.Proxy)
		res.CPU.OthersShare = res.CPU.Others / (wall.Seconds() * float64(runtime.NumCPU()))
	}
	if mem != nil {
		use, merr := mem.finish()
		res.ProxyMemory = use
		if merr != nil {
			res.Error = cmp.Or(res.Error, "after the run: "+merr.Error())
		}
		if res.Transactions > 0 {
			res.ProxyCPUMicrosPerTx = res.CPU.Proxy * 1e6 / float64(res.Transactions)
		}
		if res.Error != "" {
			res.Error += "\n" + e.name + "'s log ends:\n" + e.proc.LogTail()
		}
	}
	return res, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
