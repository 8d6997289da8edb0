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
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// report is everything one benchmark run found; it is also the JSON file.
type report struct {
	Time     time.Time     `json:"time"`
	Settings benchSettings `json:"settings"`
	Machine  proc.Machine  `json:"machine"`
	Versions versions      `json:"versions"`
	Skipped  []string      `json:"skipped,omitempty"`
	// Runs are every run, Settings.Runs of each engine, target and mode.
	Runs []runResult `json:"runs"`
	// Medians are each engine, target and mode's medians over its runs:
	// what the table shows.
	Medians       []summary      `json:"medians"`
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
	// Runs is how many times each engine, target and mode was measured.
	Runs int `json:"runs_per_measurement"`
	// People is how many people took turns in the connect-per-txn-people
	// runs.
	People int `json:"people"`
	// MySQL describes the MySQL runs, if there were any.
	MySQL *mysqlSettings `json:"mysql,omitempty"`
	// State is where the keygates kept their state: sqlite or postgres.
	State string `json:"keygate_state"`
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

// summary is one engine, target and mode's medians over its runs that did
// not fail.
type summary struct {
	Engine string `json:"engine"`
	Target string `json:"target"`
	Mode   mode   `json:"mode"`
	People int    `json:"people,omitempty"`
	// Runs is how many runs the medians are of; FailedRuns are left out.
	Runs       int     `json:"runs"`
	FailedRuns int     `json:"failed_runs,omitempty"`
	TPS        float64 `json:"median_tps"`
	LatencyMs  float64 `json:"median_latency_avg_ms"`
	// ConnectionMs is meaningful in the connect-per modes only.
	ConnectionMs float64 `json:"median_connection_ms"`
	LatencyP50Ms float64 `json:"median_latency_p50_ms"`
	LatencyP99Ms float64 `json:"median_latency_p99_ms"`
	// AddedP99Ms is the median over the runs of each run's added_p99_ms.
	AddedP99Ms *float64 `json:"median_added_p99_ms,omitempty"`
	// ProxyCPUMicrosPerTx is set for the targets that are proxies.
	ProxyCPUMicrosPerTx *float64 `json:"median_proxy_cpu_us_per_txn,omitempty"`
	OthersShare         float64  `json:"median_others_share"`
	// TPSvsDirect and TPSvsPgbouncer are the median tps over the median
	// tps of the direct and pgbouncer targets in the same engine and
	// mode.
	TPSvsDirect    *float64 `json:"median_tps_vs_direct,omitempty"`
	TPSvsPgbouncer *float64 `json:"median_tps_vs_pgbouncer,omitempty"`
}

func newReport(bench pgbenchRun, runs, people int) *report {
	return &report{
		Time: time.Now(),
		Settings: benchSettings{Script: "select-only (pgbench -S -n -M " + bench.protocol + ")", DurationSeconds: bench.seconds(), Clients: bench.clients,
			Jobs: bench.jobs, Scale: scale, SSLMode: "verify-full", Runs: runs, People: people},
		Machine:  proc.DescribeMachine(),
		Versions: versions{Go: runtime.Version()},
		Logs:     map[string]logProblems{},
	}
}

// finish works out each run's ratios and added latency against the runs
// of the same number, the medians, and keygate's memory.
func (r *report) finish() {
	for i := range r.Runs {
		run := &r.Runs[i]
		if run.Error != "" {
			continue
		}
		run.TPSvsDirect = r.ratio(run, "direct")
		run.TPSvsPgbouncer = r.ratio(run, "pgbouncer")
		if direct := r.find(run.Engine, "direct", run.Mode, run.Run); run.Target != "direct" && direct != nil && direct.Error == "" {
			v := run.LatencyP99Ms - direct.LatencyP99Ms
			run.AddedP99Ms = &v
		}
	}
	r.summarize()
	// keygate's memory is read from its first PostgreSQL runs, the
	// steady one right after the idle connections were measured.
	steadyRun, perTxnRun := r.find(enginePostgres, "keygate", steady, 1), r.find(enginePostgres, "keygate", perTxn, 1)
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

// summarize fills r.Medians, in the order the runs were first made.
func (r *report) summarize() {
	type key struct {
		engine, target string
		mode           mode
	}
	var order []key
	groups := map[key][]*runResult{}
	for i := range r.Runs {
		run := &r.Runs[i]
		k := key{run.Engine, run.Target, run.Mode}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], run)
	}
	r.Medians = nil
	for _, k := range order {
		s := summary{Engine: k.engine, Target: k.target, Mode: k.mode}
		var ok []*runResult
		for _, run := range groups[k] {
			s.People = max(s.People, run.People)
			if run.Error != "" {
				s.FailedRuns++
				continue
			}
			ok = append(ok, run)
		}
		s.Runs = len(ok)
		if len(ok) > 0 {
			med := func(f func(*runResult) float64) float64 {
				v := make([]float64, len(ok))
				for i, run := range ok {
					v[i] = f(run)
				}
				return median(v)
			}
			s.TPS = med(func(run *runResult) float64 { return run.TPS })
			s.LatencyMs = med(func(run *runResult) float64 { return run.LatencyMs })
			s.ConnectionMs = med(func(run *runResult) float64 { return run.ConnectionMs })
			s.LatencyP50Ms = med(func(run *runResult) float64 { return run.LatencyP50Ms })
			s.LatencyP99Ms = med(func(run *runResult) float64 { return run.LatencyP99Ms })
			s.OthersShare = med(func(run *runResult) float64 { return run.CPU.OthersShare })
			s.AddedP99Ms = medianOf(ok, func(run *runResult) *float64 { return run.AddedP99Ms })
			s.ProxyCPUMicrosPerTx = medianOf(ok, func(run *runResult) *float64 {
				if run.ProxyMemory == nil {
					return nil
				}
				return &run.ProxyCPUMicrosPerTx
			})
		}
		r.Medians = append(r.Medians, s)
	}
	for i := range r.Medians {
		s := &r.Medians[i]
		if s.Runs == 0 {
			continue
		}
		s.TPSvsDirect = r.medianRatio(s, "direct")
		s.TPSvsPgbouncer = r.medianRatio(s, "pgbouncer")
	}
}

// medianRatio is s's median tps over target's in the same engine and
// mode, or nil if target has no successful run.
func (r *report) medianRatio(s *summary, target string) *float64 {
	for _, base := range r.Medians {
		if base.Engine == s.Engine && base.Target == target && base.Mode == s.Mode && base.Runs > 0 && base.TPS > 0 {
			v := s.TPS / base.TPS
			return &v
		}
	}
	return nil
}

// medianOf is the median of f over runs, leaving out the runs where f is
// nil; nil if it is nil for all of them.
func medianOf(runs []*runResult, f func(*runResult) *float64) *float64 {
	var v []float64
	for _, run := range runs {
		if p := f(run); p != nil {
			v = append(v, *p)
		}
	}
	if len(v) == 0 {
		return nil
	}
	m := median(v)
	return &m
}

// median is the middle of v, or the mean of the two middle values; v is
// sorted.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is run's tps over the tps of target's run of the same number in
// the same engine and mode, or nil if that run is missing or failed.
func (r *report) ratio(run *runResult, target string) *float64 {
	base := r.find(run.Engine, target, run.Mode, run.Run)
	if base == nil || base.Error != "" || base.TPS == 0 {
		return nil
	}
	v := run.TPS / base.TPS
	return &v
}

// find is the run numbered n of engine, target and mode, or nil.
func (r *report) find(engine, target string, m mode, n int) *runResult {
	for i := range r.Runs {
		if run := &r.Runs[i]; run.Engine == engine && run.Target == target && run.Mode == m && run.Run == n {
			return run
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
	if s.State == "postgres" {
		fmt.Fprintln(w, "keygate state: a PostgreSQL database on the benchmark's PostgreSQL (state.postgres_url_env), as servers sharing one keep it")
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
	fmt.Fprintf(w, "Medians of %d runs per row; added p99 = p99 latency − direct's p99 in the same run.\n", s.Runs)
	fmt.Fprintf(w, "%-6s %-16s %-26s %9s %8s %8s %8s %8s %9s %7s %7s %8s %7s\n",
		"engine", "target", "mode", "tps", "avg ms", "conn ms", "p50 ms", "p99 ms", "added p99", "/direct", "/pgbncr", "proxy µs", "others%")
	for _, m := range r.Medians {
		label := string(m.Mode)
		if m.Mode == perTxnPeople {
			label = fmt.Sprintf("connect-per-txn, %d people", r.Settings.People)
		}
		if m.Runs == 0 {
			fmt.Fprintf(w, "%-6s %-16s %-26s %9s\n", m.Engine, m.Target, label, "FAILED")
			continue
		}
		conn := "-"
		if m.Mode != steady {
			conn = fmt.Sprintf("%.3f", m.ConnectionMs)
		}
		added := "-"
		if m.AddedP99Ms != nil {
			added = fmt.Sprintf("%+.3f", *m.AddedP99Ms)
		}
		cpu := "-"
		if m.ProxyCPUMicrosPerTx != nil {
			cpu = fmt.Sprintf("%.0f", *m.ProxyCPUMicrosPerTx)
		}
		fmt.Fprintf(w, "%-6s %-16s %-26s %9.1f %8.3f %8s %8.3f %8.3f %9s %7s %7s %8s %7.0f\n", m.Engine, m.Target, label, m.TPS, m.LatencyMs, conn,
			m.LatencyP50Ms, m.LatencyP99Ms, added, ratioText(m.TPSvsDirect), ratioText(m.TPSvsPgbouncer), cpu, 100*m.OthersShare)
	}
	var failures []string
	for _, run := range r.Runs {
		if run.Error != "" {
			failures = append(failures, fmt.Sprintf("%s %s %s run %d: %s", run.Engine, run.Target, run.Mode, run.Run, run.Error))
		}
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
	for _, name := range []string{keygateName(true), keygateName(false), "pgbouncer", "postgres", "mariadb"} {
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
