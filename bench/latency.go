package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clientStats is what one client of this program's loads did.
type clientStats struct {
	queries  int64
	latency  time.Duration
	connects int64
	connect  time.Duration
	// latencies are every transaction's, for the percentiles.
	latencies []time.Duration
	err       error
}

// record counts one transaction that took d.
func (s *clientStats) record(d time.Duration) {
	s.queries++
	s.latency += d
	s.latencies = append(s.latencies, d)
}

// summarize fills res from the clients' stats over elapsed, and returns
// the errors of the clients that failed.
func summarize(res *runResult, stats []clientStats, elapsed time.Duration) []error {
	var latency, connect time.Duration
	var connects int64
	var all []time.Duration
	var failed []error
	for _, s := range stats {
		res.Transactions += s.queries
		latency += s.latency
		connects += s.connects
		connect += s.connect
		all = append(all, s.latencies...)
		if s.err != nil {
			failed = append(failed, s.err)
		}
	}
	res.Failed = int64(len(failed))
	if res.Transactions > 0 {
		res.TPS = float64(res.Transactions) / elapsed.Seconds()
		res.LatencyMs = ms(latency) / float64(res.Transactions)
	}
	if connects > 0 {
		res.ConnectionMs = ms(connect) / float64(connects)
	}
	res.LatencyP50Ms, res.LatencyP99Ms = percentiles(all)
	return failed
}

// percentiles are the median and the 99th percentile of d in
// milliseconds, by nearest rank; 0 when d is empty. d is sorted.
func percentiles(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	rank := func(p float64) float64 {
		i := int(p*float64(len(d))+0.999999) - 1
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	return rank(0.50), rank(0.99)
}

// pgbenchLatencies reads the per-transaction logs pgbench -l wrote into
// dir (one file per thread) and returns every transaction's latency: the
// third field of each line, in microseconds.
func pgbenchLatencies(dir string) ([]time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, fmt.Errorf("pgbench logs: %w", err)
	}
	var all []time.Duration
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("pgbench logs: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("pgbench log %s: %q: %w", name, sc.Text(), err)
			}
			all = append(all, time.Duration(us)*time.Microsecond)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("pgbench log %s: %w", name, err)
		}
	}
	return all, nil
}
