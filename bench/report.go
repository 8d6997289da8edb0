package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// report is everything one benchmark run found; it is also the JSON file.
type report struct {
	Time          time.Time      `json:"time"`
	Settings      benchSettings  `json:"settings"`
	Machine       proc.Machine   `json:"machine"`
	Versions      versions       `json:"versions"`
	Skipped       []string       `json:"skipped,omitempty"`
	Runs          []runResult    `json:"runs"`
	KeygateMemory *keygateMemory `json:"keygate_memory,omitempty"`
	// KeygateHeld is keygate's RSS with idle connections held open,
	// measured before the runs.
	KeygateHeld *heldMemory `json:"keygate_held_connections,omitempty"`
	// Logs are the warnings and errors each component logged.
	Logs map[string]logProblems `json:"logs"`
}

type benchSettings struct {
	// Script to SSLMode describe the pgbench runs.
	Script          string `json:"script"`
	DurationSeconds int    `json:"duration_seconds"`
	Clients         int    `json:"clients"`
	Jobs            int    `json:"jobs"`
	Scale           int    `json:"scale"`
	SSLMode         string `json:"sslmode"`
	// MySQL describes the MySQL runs, if there were any.
	MySQL *mysqlSettings `json:"mysql,omitempty"`
}

// mysqlSettings describe the MySQL load.
type mysqlSettings struct {
	Query    string `json:"query"`
	Protocol string `json:"protocol"`
	// InterpolateParams is go-sql-driver's: true sends the query as text.
	InterpolateParams bool   `json:"interpolate_params"`
	Rows              int    `json:"rows"`
	DurationSeconds   int    `json:"duration_seconds"`
	Clients           int    `json:"clients"`
	TLS               string `json:"tls"`
}

type versions struct {
	PostgreSQL string `json:"postgresql,omitempty"`
	Pgbench    string `json:"pgbench,omitempty"`
	PgBouncer  string `json:"pgbouncer,omitempty"`
	MariaDB    string `json:"mariadb,omitempty"`
	Keygate    string `json:"keygate"`
	Go         string `json:"go"`
}

// keygateMemory summarises keygate's memory over the runs, in KiB.
type keygateMemory struct {
	// IdleRSSKiB is VmRSS before the steady run, with no client connected.
	IdleRSSKiB int64 `json:"idle_rss_kib"`
	// SteadyMaxRSSKiB is the highest VmRSS sampled while the clients held
	// their connections.
	SteadyMaxRSSKiB  int64 `json:"steady_max_rss_kib"`
	SteadyMeanRSSKiB int64 `json:"steady_mean_rss_kib"`
	// PerConnectionKiB is (SteadyMaxRSSKiB - IdleRSSKiB) / clients.
	PerConnectionKiB float64 `json:"per_connection_kib"`
	PerTxnMaxRSSKiB  int64   `json:"connect_per_txn_max_rss_kib"`
	// HWMKiB is VmHWM after the last run: keygate's peak RSS.
	HWMKiB int64 `json:"vm_hwm_kib"`
}

func newReport(bench pgbenchRun) *report {
	return &report{
		Time: time.Now(),
		Settings: benchSettings{Script: "select-only (pgbench -S -n -M " + bench.protocol + ")", DurationSeconds: bench.seconds(), Clients: bench.clients,
			Jobs: bench.jobs, Scale: scale, SSLMode: "verify-full"},
		Machine:  proc.DescribeMachine(),
		Versions: versions{Go: runtime.Version()},
		Logs:     map[string]logProblems{},
	}
}

// finish works out the ratios and keygate's memory from the runs.
func (r *report) finish() {
	for i := range r.Runs {
		run := &r.Runs[i]
		if run.Error != "" {
			continue
		}
		run.TPSvsDirect = r.ratio(run, "direct")
		run.TPSvsPgbouncer = r.ratio(run, "pgbouncer")
	}
	// keygate's memory is read from its PostgreSQL runs, which also
	// measure it with idle connections held.
	steadyRun, perTxnRun := r.find(enginePostgres, "keygate", steady), r.find(enginePostgres, "keygate", perTxn)
	if steadyRun == nil || steadyRun.ProxyMemory == nil {
		return
	}
	s := steadyRun.ProxyMemory
	m := &keygateMemory{IdleRSSKiB: s.BeforeRSSKiB, SteadyMaxRSSKiB: s.MaxRSSKiB, SteadyMeanRSSKiB: s.MeanRSSKiB, HWMKiB: s.HWMKiB,
		PerConnectionKiB: float64(s.MaxRSSKiB-s.BeforeRSSKiB) / float64(r.Settings.Clients)}
	if perTxnRun != nil && perTxnRun.Error == "" && perTxnRun.ProxyMemory != nil {
		m.PerTxnMaxRSSKiB, m.HWMKiB = perTxnRun.ProxyMemory.MaxRSSKiB, perTxnRun.ProxyMemory.HWMKiB
	}
	r.KeygateMemory = m
}

// ratio is run's tps over the tps of target in the same engine and mode,
// or nil if that run is missing or failed.
func (r *report) ratio(run *runResult, target string) *float64 {
	base := r.find(run.Engine, target, run.Mode)
	if base == nil || base.Error != "" || base.TPS == 0 {
		return nil
	}
	v := run.TPS / base.TPS
	return &v
}

func (r *report) find(engine, target string, m mode) *runResult {
	for i := range r.Runs {
		if r.Runs[i].Engine == engine && r.Runs[i].Target == target && r.Runs[i].Mode == m {
			return &r.Runs[i]
		}
	}
	return nil
}

// print writes the table.
func (r *report) print(w io.Writer) {
	s := r.Settings
	fmt.Fprintln(w)
	if r.Versions.PostgreSQL != "" {
		fmt.Fprintf(w, "postgres: pgbench %s, %d clients, %d threads, %d s per run, scale %d, sslmode=%s\n",
			s.Script, s.Clients, s.Jobs, s.DurationSeconds, s.Scale, s.SSLMode)
	}
	if my := s.MySQL; my != nil {
		fmt.Fprintf(w, "mysql: %s (%s protocol, go-sql-driver/mysql), %d clients, %d s per run, %d rows, TLS %s\n",
			my.Query, my.Protocol, my.Clients, my.DurationSeconds, my.Rows, my.TLS)
	}
	fmt.Fprintf(w, "%s, %d CPUs, load %s before and %s after the runs", r.Time.Format("2006-01-02 15:04 MST"), r.Machine.CPUs,
		r.Machine.LoadBefore, r.Machine.LoadAfter)
	for _, v := range []string{r.Versions.PostgreSQL, r.Versions.PgBouncer, r.Versions.MariaDB, r.Versions.Keygate} {
		if v != "" {
			fmt.Fprintf(w, "; %s", v)
		}
	}
	fmt.Fprintln(w)
	if proc.Busy(r.Machine.LoadBefore) {
		fmt.Fprintln(w, "WARNING: other work was running on this machine before the runs (1-minute load average ≥ 1): the numbers are skewed")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-9s %-10s %-17s %10s %11s %9s %11s %14s %13s %9s\n",
		"engine", "target", "mode", "tps", "latency ms", "conn ms", "tps/direct", "tps/pgbouncer", "proxy µs/txn", "others %")
	var failures []string
	for _, run := range r.Runs {
		if run.Error != "" {
			fmt.Fprintf(w, "%-9s %-10s %-17s %10s\n", run.Engine, run.Target, run.Mode, "FAILED")
			failures = append(failures, fmt.Sprintf("%s %s %s: %s", run.Engine, run.Target, run.Mode, run.Error))
			continue
		}
		conn, cpu := "-", "-"
		if run.Mode != steady {
			conn = fmt.Sprintf("%.3f", run.ConnectionMs)
		}
		if run.ProxyMemory != nil {
			cpu = fmt.Sprintf("%.0f", run.ProxyCPUMicrosPerTx)
		}
		fmt.Fprintf(w, "%-9s %-10s %-17s %10.1f %11.3f %9s %11s %14s %13s %9.0f\n", run.Engine, run.Target, run.Mode, run.TPS, run.LatencyMs, conn,
			ratioText(run.TPSvsDirect), ratioText(run.TPSvsPgbouncer), cpu, 100*run.CPU.OthersShare)
	}
	if r.shared() {
		fmt.Fprintln(w, "WARNING: in some runs, other processes (or the hypervisor) took more than 10% of the CPUs (others %): compare only runs where it is low")
	}
	for _, sk := range r.Skipped {
		fmt.Fprintf(w, "skipped %s\n", sk)
	}
	for _, f := range failures {
		fmt.Fprintf(w, "failed %s\n", f)
	}
	fmt.Fprintln(w)
	if m := r.KeygateMemory; m != nil {
		fmt.Fprintf(w, "keygate RSS in the postgres runs: idle %s; steady run with %d connections max %s (mean %s), so %.0f KiB per connection; ",
			mib(m.IdleRSSKiB), s.Clients, mib(m.SteadyMaxRSSKiB), mib(m.SteadyMeanRSSKiB), m.PerConnectionKiB)
		if m.PerTxnMaxRSSKiB > 0 {
			fmt.Fprintf(w, "connect-per-txn run max %s; ", mib(m.PerTxnMaxRSSKiB))
		}
		fmt.Fprintf(w, "VmHWM %s\n", mib(m.HWMKiB))
	}
	if h := r.KeygateHeld; h != nil {
		fmt.Fprintf(w, "keygate RSS with %d idle TLS connections held (idle_conns), before any load: %s → %s, %.1f KiB per connection (rss_per_idle_conn_kib)\n",
			h.IdleConns, mib(h.BeforeRSSKiB), mib(h.HeldRSSKiB), h.RSSPerIdleConnKiB)
	}
	for _, name := range []string{"keygate", "pgbouncer", "postgres", "mariadb"} {
		p, ok := r.Logs[name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%s logged %d warnings or errors\n", name, p.Count)
		for _, line := range p.First {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

// scan reads each log for warnings and errors into r.Logs.
func (r *report) scan(logs ...componentLog) error {
	for _, l := range logs {
		p, err := l.scan()
		if err != nil {
			return err
		}
		r.Logs[l.name] = p
	}
	return nil
}

// shared reports whether other work took more than a tenth of the CPUs in
// any run.
func (r *report) shared() bool {
	for _, run := range r.Runs {
		if run.CPU.OthersShare > 0.1 {
			return true
		}
	}
	return false
}

func ratioText(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// save writes the report as JSON into dir and returns the file's path.
func (r *report) save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	path := filepath.Join(dir, "results-"+r.Time.UTC().Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	return path, nil
}

// commandVersion is the first line of `bin --version`.
func commandVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}
