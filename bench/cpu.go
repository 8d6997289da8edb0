package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keygate/keygate/bench/internal/proc"
)

// cpuUse is where CPU time went during one run, in seconds. On a small
// machine the client (pgbench, or this program for MySQL), the server and
// the proxy share the cores, so where the time goes explains the tps;
// Others is time the benchmark did not use (other processes, and time the
// hypervisor stole), which skews a run.
type cpuUse struct {
	Pgbench  float64 `json:"pgbench,omitempty"`
	Postgres float64 `json:"postgres,omitempty"`
	// Driver is this program's CPU time: the MySQL runs' client.
	Driver  float64 `json:"driver,omitempty"`
	MariaDB float64 `json:"mariadb,omitempty"`
	Proxy   float64 `json:"proxy,omitempty"`
	Machine float64 `json:"machine"`
	Others  float64 `json:"others"`
	// OthersShare is Others over the run's wall time on all CPUs.
	OthersShare float64 `json:"others_share"`
}

// cpuSnapshot is cumulative CPU time at one moment.
type cpuSnapshot struct {
	machine float64
	server  float64
	proxy   float64
}

// serverCPU reads a database server's cumulative CPU time.
type serverCPU func() (float64, error)

// postgresCPU is PostgreSQL's CPU time: the postmaster and its backends,
// running or already gone.
func postgresCPU(postmasterPID int) serverCPU {
	return func() (float64, error) { return childrenCPU(postmasterPID) }
}

// mariadbCPU is MariaDB's CPU time: one process, whose connections are
// threads.
func mariadbCPU(pid int) serverCPU {
	return func() (float64, error) { return proc.ProcessCPU(pid) }
}

// takeCPU reads the machine's busy time, the server's and, if proxyPID is
// not 0, the proxy's.
func takeCPU(server serverCPU, proxyPID int) (cpuSnapshot, error) {
	var s cpuSnapshot
	var err error
	if s.machine, err = proc.MachineBusy(); err != nil {
		return s, err
	}
	if s.server, err = server(); err != nil {
		return s, err
	}
	if proxyPID != 0 {
		f, err := proc.Stat(proxyPID)
		if err != nil {
			return s, err
		}
		s.proxy = proc.Ticks(f, 11, 12)
	}
	return s, nil
}

// childrenCPU is the CPU time of parent and its children: their own time,
// and the time of children that have exited, which parent collected when
// it reaped them. PostgreSQL's backends are children of the postmaster.
func childrenCPU(parent int) (float64, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	var total float64
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := proc.Stat(pid)
		if err != nil {
			continue // it exited meanwhile
		}
		switch {
		case pid == parent:
			total += proc.Ticks(f, 11, 12, 13, 14) // utime, stime, cutime, cstime
		case f[1] == strconv.Itoa(parent): // ppid
			total += proc.Ticks(f, 11, 12)
		}
	}
	return total, nil
}

// postmasterPID is the first line of the data directory's postmaster.pid.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("find postmaster: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("find postmaster: %s: %w", dataDir, err)
	}
	return pid, nil
}
