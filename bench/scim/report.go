package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// report is everything one run found; it is also the JSON file.
type report struct {
	Time     time.Time    `json:"time"`
	Settings settings     `json:"settings"`
	Machine  proc.Machine `json:"machine"`
	Versions versions     `json:"versions"`
	Shape    groupShape   `json:"group_shape"`

	Provisioning      []*phaseResult    `json:"provisioning"`
	ProvisioningTotal provisioningTotal `json:"provisioning_total"`
	// Unsent counts memberships not sent because their user or group
	// failed to be created.
	Unsent int `json:"unsent_memberships,omitempty"`
	// Reads are timed one request at a time, at full size.
	Reads []*phaseResult `json:"reads"`

	KeygateMemory keygateMemory `json:"keygate_memory"`
	DataFiles     []dataFile    `json:"data_files"`
	KeygateLog    logProblems   `json:"keygate_log"`
}

type settings struct {
	Users       int    `json:"users"`
	Groups      int    `json:"groups"`
	Memberships int    `json:"memberships"`
	Workers     int    `json:"workers"`
	Batch       int    `json:"members_per_patch"`
	Single      int    `json:"memberships_one_per_patch"`
	Lookups     int    `json:"lookups"`
	Reads       int    `json:"reads"`
	Seed        uint64 `json:"seed"`
	Protocol    string `json:"protocol"`
}

type versions struct {
	Keygate string `json:"keygate"`
	Go      string `json:"go"`
}

// provisioningTotal is the provisioning phases together, against the goal.
type provisioningTotal struct {
	Seconds           float64 `json:"seconds"`
	GoalSeconds       float64 `json:"goal_seconds"`
	WithinGoal        bool    `json:"within_goal"`
	Requests          int     `json:"requests"`
	Errors            int     `json:"errors"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	KeygateCPUSeconds float64 `json:"keygate_cpu_seconds"`
	DriverCPUSeconds  float64 `json:"driver_cpu_seconds"`
}

// keygateMemory is keygate's memory, in KiB, from /proc/PID/status.
type keygateMemory struct {
	BeforeRSSKiB int64 `json:"before_provisioning_rss_kib"`
	// ProvisioningMaxRSSKiB is the highest VmRSS sampled (every 100 ms)
	// while provisioning.
	ProvisioningMaxRSSKiB int64 `json:"provisioning_max_rss_kib"`
	// EndRSSKiB and HWMKiB are VmRSS and VmHWM after the reads.
	EndRSSKiB int64 `json:"end_rss_kib"`
	HWMKiB    int64 `json:"vm_hwm_kib"`
}

func newReport(o options) *report {
	return &report{
		Time: time.Now(),
		Settings: settings{Users: o.users, Groups: o.groups, Memberships: o.memberships, Workers: o.workers, Batch: o.batch,
			Single: o.single, Lookups: o.lookups, Reads: o.reads, Seed: o.seed, Protocol: "HTTP/1.1 over TLS, keep-alive"},
		Machine:  proc.DescribeMachine(),
		Versions: versions{Go: runtime.Version()},
	}
}

// finishProvisioning sums the provisioning phases; wall is the time from
// the first request to the last answer.
func (r *report) finishProvisioning(wall time.Duration) {
	t := provisioningTotal{Seconds: wall.Seconds(), GoalSeconds: goal.Seconds()}
	t.WithinGoal = wall < goal
	for _, p := range r.Provisioning {
		t.Requests += p.Requests
		t.Errors += p.Errors
		t.KeygateCPUSeconds += p.KeygateCPUSeconds
		t.DriverCPUSeconds += p.DriverCPUSeconds
	}
	if t.Seconds > 0 {
		t.RequestsPerSecond = float64(t.Requests) / t.Seconds
	}
	r.ProvisioningTotal = t
}

// failures counts the requests that failed in all phases.
func (r *report) failures() int {
	n := r.ProvisioningTotal.Errors
	for _, p := range r.Reads {
		n += p.Errors
	}
	return n
}

// print writes the tables.
func (r *report) print(w io.Writer) {
	s, sh := r.Settings, r.Shape
	fmt.Fprintf(w, "\nSCIM provisioning: %d users, %d groups, %d memberships (%d in PATCHes of up to %d, %d one per PATCH), %d workers, %s\n",
		s.Users, s.Groups, s.Memberships, sh.Batched, s.Batch, sh.OnePerPatch, s.Workers, s.Protocol)
	fmt.Fprintf(w, "group sizes: largest %d (%q), %d groups over 1,000, median %d, smallest %d\n",
		sh.Largest, sh.LargestName, sh.Over1000, sh.Median, sh.Smallest)
	fmt.Fprintf(w, "%s, %d CPUs (%s), load %s before and %s after; %s\n", r.Time.UTC().Format("2006-01-02 15:04 MST"), r.Machine.CPUs,
		r.Machine.CPUModel, r.Machine.LoadBefore, r.Machine.LoadAfter, r.Versions.Keygate)

	fmt.Fprintf(w, "\n%-38s %8s %6s %7s %8s %9s %7s %7s %7s %11s %10s %8s\n",
		"provisioning", "requests", "errors", "s", "req/s", "objects/s", "p50 ms", "p95 ms", "p99 ms", "keygate CPU", "driver CPU", "others %")
	shared := false
	for _, p := range r.Provisioning {
		fmt.Fprintf(w, "%-38s %8d %6d %7.1f %8.1f %9.1f %7.1f %7.1f %7.1f %10.1fs %9.1fs %8.0f\n", p.Name, p.Requests, p.Errors, p.Seconds,
			p.RequestsPerSecond, p.ObjectsPerSecond, p.Latency.P50, p.Latency.P95, p.Latency.P99, p.KeygateCPUSeconds, p.DriverCPUSeconds,
			100*p.OthersShare)
		shared = shared || p.OthersShare > 0.1
	}
	t := r.ProvisioningTotal
	fmt.Fprintf(w, "%-38s %8d %6d %7.1f %8.1f %9s %7s %7s %7s %10.1fs %9.1fs %8s\n", "all provisioning", t.Requests, t.Errors, t.Seconds,
		t.RequestsPerSecond, "-", "-", "-", "-", t.KeygateCPUSeconds, t.DriverCPUSeconds, "-")
	if shared {
		fmt.Fprintln(w, "WARNING: in some phases, other processes (or the hypervisor) took more than 10% of the CPUs (others %): the numbers are skewed")
	}
	verdict := fmt.Sprintf("within the %s goal (%.0f%% of it)", goalText, 100*t.Seconds/t.GoalSeconds)
	if !t.WithinGoal {
		verdict = fmt.Sprintf("OVER the %s goal by %.1f s", goalText, t.Seconds-t.GoalSeconds)
	}
	fmt.Fprintf(w, "Provisioned in %.1f s: %s\n", t.Seconds, verdict)
	if r.Unsent > 0 {
		fmt.Fprintf(w, "%d memberships were not sent: their user or group failed to be created\n", r.Unsent)
	}

	fmt.Fprintf(w, "\n%-56s %8s %6s %8s %7s %7s %7s %7s\n", "reads at full size, one at a time", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
	for _, p := range r.Reads {
		fmt.Fprintf(w, "%-56s %8d %6d %8.1f %7.2f %7.2f %7.2f %7.2f\n", p.Name, p.Requests, p.Errors, p.RequestsPerSecond,
			p.Latency.P50, p.Latency.P95, p.Latency.P99, p.Latency.Max)
	}

	m := r.KeygateMemory
	fmt.Fprintf(w, "\nkeygate RSS: %s before provisioning, max %s during it, %s at the end; VmHWM %s\n",
		mib(m.BeforeRSSKiB), mib(m.ProvisioningMaxRSSKiB), mib(m.EndRSSKiB), mib(m.HWMKiB))
	fmt.Fprint(w, "data_dir:")
	var total int64
	for i, f := range r.DataFiles {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(w, "%s %s %s", sep, f.Name, size(f.Bytes))
		total += f.Bytes
	}
	fmt.Fprintf(w, "; %s in all\n", size(total))
	fmt.Fprintf(w, "keygate logged %d warnings or errors\n", r.KeygateLog.Count)
	for _, line := range r.KeygateLog.First {
		fmt.Fprintf(w, "    %s\n", line)
	}
	for _, p := range append(append([]*phaseResult{}, r.Provisioning...), r.Reads...) {
		if p.Errors == 0 {
			continue
		}
		fmt.Fprintf(w, "FAILED: %d of %d requests of %s, first:\n", p.Errors, p.Requests, p.Name)
		for _, e := range p.FirstErrors {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func size(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// save writes the report as JSON into dir and returns the file's path.
func (r *report) save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	path := filepath.Join(dir, "scim-"+r.Time.UTC().Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("save results: %w", err)
	}
	return path, nil
}
