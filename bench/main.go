// Command bench measures keygate's PostgreSQL gateway against a direct TLS
// connection to PostgreSQL and against pgbouncer, all in one run on one
// throwaway PostgreSQL, and prints the ratios: pgbench's select-only
// script over persistent connections and with a new connection per
// transaction, plus keygate's memory.
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
	"syscall"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
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
}

func main() {
	var o options
	flag.StringVar(&o.keygateBin, "keygate", "", "the keygate binary to benchmark (bench/run.sh builds it)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each pgbench run lasts (pgbench -T)")
	flag.IntVar(&o.clients, "clients", 8, "concurrent pgbench clients (pgbench -c)")
	flag.StringVar(&o.protocol, "protocol", "simple", "how pgbench sends its queries: simple, extended or prepared (pgbench -M)")
	flag.StringVar(&o.outDir, "out", filepath.Join("bench", "out"), "directory for the JSON results")
	flag.Parse()
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
		return fmt.Errorf("-clients %d: between 1 and 250 (PostgreSQL runs with max_connections=300)", o.clients)
	}
	return nil
}

// run sets everything up, runs the benchmark, reports, and takes
// everything down again, also when ctx is cancelled.
func run(ctx context.Context, o options, w io.Writer) (err error) {
	bench := pgbenchRun{clients: o.clients, jobs: min(2, o.clients), duration: o.duration, protocol: o.protocol}
	rep := newReport(bench)
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
	fmt.Fprintln(w, "Starting a throwaway PostgreSQL with TLS")
	pg, err := startPostgres(ctx, pkiDir)
	if err != nil {
		return err
	}
	defer pg.Stop()
	rep.Versions.PostgreSQL = pg.Version
	postmaster, err := postmasterPID(filepath.Join(pg.Dir, "data"))
	if err != nil {
		return err
	}
	if bench.bin, err = pgbenchBinary(pg.BinDir); err != nil {
		return err
	}
	rep.Versions.Pgbench = commandVersion(ctx, bench.bin)
	adminPassword := randomHex(16)
	start := time.Now()
	if err := prepareUpstream(ctx, pg, bench.bin, caFile, adminPassword); err != nil {
		return err
	}
	fmt.Fprintf(w, "  %s on %s; pgbench -i -s %d as %s took %.1fs\n", pg.Version, pg.Address(), scale, adminUser, time.Since(start).Seconds())

	kgDir := filepath.Join(dir, "keygate")
	if err := os.Mkdir(kgDir, 0o700); err != nil {
		return fmt.Errorf("create keygate directory: %w", err)
	}
	fmt.Fprintln(w, "Starting keygate")
	kg, err := startKeygate(ctx, o.keygateBin, kgDir, pg.Address(), adminPassword)
	if err != nil {
		return err
	}
	defer func() {
		if serr := kg.Stop(stopGrace); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	rep.Versions.Keygate = kg.version(ctx)
	fmt.Fprintf(w, "  %s, gateway on 127.0.0.1:%d, person %q in %s (ro)\n", rep.Versions.Keygate, kg.pgPort, person, personGroup)

	logs := []componentLog{
		{name: "postgres", path: pg.LogFile(), markers: postgresMarkers, benign: postgresBenign},
		{name: "keygate", path: kg.LogPath(), markers: keygateMarkers},
	}
	adminPW := func(context.Context) (string, error) { return adminPassword, nil }
	endpoints := []endpoint{{name: "direct", port: pg.Port, user: adminUser, caFile: caFile, password: adminPW}}
	if bin, ferr := findPgbouncer(); ferr != nil {
		rep.Skipped = append(rep.Skipped, "pgbouncer: "+ferr.Error())
		fmt.Fprintf(w, "Skipping pgbouncer: %v\n", ferr)
	} else {
		fmt.Fprintln(w, "Starting pgbouncer")
		b, err := startPgbouncer(ctx, bin, pg, pkiDir, adminUser, adminPassword, o.clients)
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
		endpoints = append(endpoints, endpoint{name: "pgbouncer", port: b.port, user: adminUser, caFile: caFile, password: adminPW, proc: b.Process})
		logs = append(logs, componentLog{name: "pgbouncer", path: b.LogPath(), markers: pgbouncerMarkers})
	}
	kgEndpoint := endpoint{name: "keygate", port: kg.pgPort, user: person, caFile: kg.caFile, password: kg.token, proc: kg.Process}
	endpoints = append(endpoints, kgEndpoint)

	for _, e := range endpoints {
		if err := check(ctx, e); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "Holding %d idle connections through keygate to measure its memory per connection\n", heldConnections)
	if rep.KeygateHeld, err = holdConnections(ctx, kgEndpoint, heldConnections); err != nil {
		return err
	}

	fmt.Fprintf(w, "Running pgbench -S -c %d -j %d -T %d, %d runs\n", bench.clients, bench.jobs, bench.seconds(), 2*len(endpoints))
	for _, m := range []mode{steady, perTxn} {
		for _, e := range endpoints {
			res, err := measure(ctx, bench, e, m, postmaster)
			if err != nil {
				return err
			}
			status := fmt.Sprintf("%.0f tps", res.TPS)
			if res.Error != "" {
				status = "FAILED: " + res.Error
			}
			fmt.Fprintf(w, "  %-9s %-15s %s\n", e.name, m, status)
			rep.Runs = append(rep.Runs, res)
		}
	}

	rep.Machine.LoadAfter = proc.LoadAverage()
	for _, l := range logs {
		p, err := l.scan()
		if err != nil {
			return err
		}
		rep.Logs[l.name] = p
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

// measure runs pgbench against e, and accounts for the CPU time it,
// PostgreSQL, the proxy and everything else used meanwhile, and for the
// proxy's memory.
func measure(ctx context.Context, bench pgbenchRun, e endpoint, m mode, postmaster int) (runResult, error) {
	password, err := e.password(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return runResult{}, ctx.Err()
		}
		// keygate has refused a token or is gone: a failed run.
		res := runResult{Target: e.name, Mode: m, Error: "no password: " + err.Error()}
		if e.proc != nil {
			res.Error += "\n" + e.name + "'s log ends:\n" + e.proc.LogTail()
		}
		return res, nil
	}
	proxyPID := 0
	if e.proc != nil {
		proxyPID = e.proc.Pid()
	}
	before, err := takeCPU(postmaster, proxyPID)
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
	res, err := bench.run(ctx, e, m, password)
	wall := time.Since(start)
	if err != nil {
		if mem != nil {
			mem.finish()
		}
		return res, err
	}
	if after, err := takeCPU(postmaster, proxyPID); err != nil {
		res.Error = cmp.Or(res.Error, "after the run: "+err.Error())
	} else {
		res.CPU.Machine = after.machine - before.machine
		res.CPU.Postgres = after.postgres - before.postgres
		res.CPU.Proxy = after.proxy - before.proxy
		res.CPU.Others = max(0, res.CPU.Machine-res.CPU.Pgbench-res.CPU.Postgres-res.CPU.Proxy)
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
