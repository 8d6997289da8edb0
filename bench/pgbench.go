package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/bench/internal/proc"
)

// mode is how the clients use connections.
type mode string

const (
	// steady keeps one connection per client for the whole run.
	steady mode = "steady"
	// perTxn opens a new connection for every transaction (pgbench -C).
	perTxn mode = "connect-per-txn"
	// perQuery opens a new connection for every query (MySQL runs).
	perQuery mode = "connect-per-query"
	// perTxnPeople opens a new connection for every transaction, as the
	// next of many people in turn (this program's load, not pgbench).
	perTxnPeople mode = "connect-per-txn-people"
)

// The engines measured, named as keygate's config names them.
const (
	enginePostgres = "postgres"
	engineMySQL    = "mysql"
)

// endpoint is somewhere the clients connect to, and as whom.
type endpoint struct {
	engine   string
	name     string
	port     int
	user     string
	database string
	caFile   string
	// password is asked for before every run: keygate's is a fresh token.
	password func(context.Context) (string, error)
	// people is asked for before every connect-per-txn-people run:
	// keygate's are fresh tokens for many people, the others' the admin
	// user alone.
	people func(context.Context) (*loginSet, error)
	// proc is the proxy process whose memory is sampled, or nil.
	proc *proc.Process
}

// runResult is one run: pgbench's, parsed, or one of this program's
// loads'.
type runResult struct {
	Engine string `json:"engine"`
	Target string `json:"target"`
	Mode   mode   `json:"mode"`
	// Run counts the runs of this engine, target and mode from 1.
	Run int `json:"run"`
	// People is how many people took turns connecting, in
	// connect-per-txn-people runs.
	People int     `json:"people,omitempty"`
	TPS    float64 `json:"tps"`
	// LatencyMs is pgbench's "latency average", or the MySQL load's mean
	// query time: with a connection per transaction it includes the
	// connection.
	LatencyMs float64 `json:"latency_avg_ms"`
	// LatencyP50Ms and LatencyP99Ms are percentiles of every transaction's
	// latency (from pgbench -l, or measured by the load), which includes
	// the connection as LatencyMs does.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	// AddedP99Ms is LatencyP99Ms minus that of the direct run of the same
	// engine, mode and run number: the latency a proxy adds at the 99th
	// percentile.
	AddedP99Ms *float64 `json:"added_p99_ms,omitempty"`
	// ConnectionMs is "average connection time" (-C) or "initial
	// connection time" (steady), as pgbench reports them; the MySQL load
	// measures the same.
	ConnectionMs float64 `json:"connection_ms"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed_transactions"`
	// TPSvsDirect and TPSvsPgbouncer are TPS over the TPS of the direct and
	// pgbouncer runs in the same mode and run number.
	TPSvsDirect    *float64 `json:"tps_vs_direct,omitempty"`
	TPSvsPgbouncer *float64 `json:"tps_vs_pgbouncer,omitempty"`
	// Error is set when pgbench or the MySQL load failed or did not
	// finish; the numbers are then what it measured, if anything.
	Error  string `json:"error,omitempty"`
	Output string `json:"pgbench_output,omitempty"`
	// CPU is where the machine's CPU time went during the run.
	CPU cpuUse `json:"cpu_seconds"`
	// ProxyCPUMicrosPerTx is the proxy's CPU time over the transactions.
	ProxyCPUMicrosPerTx float64 `json:"proxy_cpu_us_per_txn,omitempty"`
	// ProxyMemory is the proxy's memory during the run.
	ProxyMemory *memoryUse `json:"proxy_memory,omitempty"`
}

// pgbenchBinary is the pgbench beside the server binaries, else the one
// on PATH.
func pgbenchBinary(binDir string) (string, error) {
	p := filepath.Join(binDir, "pgbench")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	p, err := exec.LookPath("pgbench")
	if err != nil {
		return "", fmt.Errorf("pgbench not found in %s or on PATH: install postgresql-15: %w", binDir, err)
	}
	return p, nil
}

// pgbenchRun is the part of a run that is the same for every endpoint.
type pgbenchRun struct {
	bin      string
	clients  int
	jobs     int
	duration time.Duration
	// protocol is pgbench -M: simple, extended or prepared.
	protocol string
}

// run runs pgbench's select-only script against e with c's password,
// logging every transaction to read the latency percentiles from. A failed
// or hung pgbench is reported in the result, not as an error, so that the
// other runs still happen; the error is for an interruption.
func (p pgbenchRun) run(ctx context.Context, e endpoint, m mode, c credentials) (runResult, error) {
	res := runResult{Engine: e.engine, Target: e.name, Mode: m}
	logDir, err := os.MkdirTemp("", "keygate-bench-pgbench-log-")
	if err != nil {
		return res, fmt.Errorf("pgbench log directory: %w", err)
	}
	defer os.RemoveAll(logDir)
	args := []string{"-n", "-S", "-M", p.protocol, "-c", strconv.Itoa(p.clients), "-j", strconv.Itoa(p.jobs), "-T", strconv.Itoa(p.seconds()),
		"-l", "--log-prefix", filepath.Join(logDir, "txn"), "-h", "127.0.0.1", "-p", strconv.Itoa(e.port), "-U", e.user}
	if m == perTxn {
		args = append(args, "-C")
	}
	args = append(args, e.database)
	// Generous: connecting, and the tail of the last transactions.
	runCtx, cancel := context.WithTimeout(ctx, p.duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, p.bin, args...)
	cmd.Env = append(pgFreeEnv(), "PGPASSWORD="+c.password, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+e.caFile, "PGCONNECT_TIMEOUT=10")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if cmd.ProcessState != nil {
		res.CPU.Pgbench = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	res.Output = stdout.String() + stderr.String()
	parse(&res, stdout.String())
	latencies, lerr := pgbenchLatencies(logDir)
	res.LatencyP50Ms, res.LatencyP99Ms = percentiles(latencies)
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		res.Error = fmt.Sprintf("pgbench had not finished %s after a %s run and was killed", p.duration+time.Minute, p.duration)
	case runErr != nil:
		res.Error = fmt.Sprintf("pgbench %s: %v: %s", strings.Join(args, " "), runErr, proc.LastLines(stderr.String(), 5))
	case res.TPS == 0:
		res.Error = "pgbench printed no tps: " + proc.LastLines(res.Output, 5)
	case lerr != nil:
		res.Error = lerr.Error()
	}
	return res, nil
}

// seconds is pgbench's -T, at least 1.
func (p pgbenchRun) seconds() int {
	return max(1, int(p.duration.Round(time.Second)/time.Second))
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	connRE    = regexp.MustCompile(`(?m)^(?:average|initial) connection time = ([0-9.]+) ms`)
	txnsRE    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parse fills res from pgbench's report; what it did not print stays 0.
func parse(res *runResult, out string) {
	res.TPS = parseFloat(tpsRE, out)
	res.LatencyMs = parseFloat(latencyRE, out)
	res.ConnectionMs = parseFloat(connRE, out)
	res.Transactions = int64(parseFloat(txnsRE, out))
	res.Failed = int64(parseFloat(failedRE, out))
}

func parseFloat(re *regexp.Regexp, out string) float64 {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

// pgFreeEnv is the environment without libpq's PG* variables, so that
// nothing of the caller's shell changes how pgbench connects.
func pgFreeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// check connects to e once, the way pgbench will, and reads the scale: it
// fails early and clearly on a setup mistake, and has keygate create the
// person's role before anything is measured.
func check(ctx context.Context, e endpoint) error {
	password, err := e.password(ctx)
	if err != nil {
		return fmt.Errorf("check %s: password: %w", e.name, err)
	}
	c, err := connect(ctx, e, password)
	if err != nil {
		return fmt.Errorf("check %s: %w", e.name, err)
	}
	defer c.Close(ctx)
	res := c.ExecParams(ctx, "SELECT count(*) FROM pgbench_branches", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("check %s: %w", e.name, res.Err)
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(scale) {
		return fmt.Errorf("check %s: pgbench_branches has %v rows, want %d", e.name, res.Rows, scale)
	}
	return nil
}

// connect opens a connection to e as pgbench does: TLS verified against
// e's CA, password authentication.
func connect(ctx context.Context, e endpoint, password string) (*pgconn.PgConn, error) {
	return connectWithin(ctx, e, password, 10*time.Second)
}

// connectWithin is connect, giving up after timeout.
func connectWithin(ctx context.Context, e endpoint, password string, timeout time.Duration) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		e.port, e.user, e.database, e.caFile))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	cfg.ConnectTimeout = timeout
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}
