package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuUse is where CPU time went during one run, in seconds. On a small
// machine pgbench, PostgreSQL and the proxy share the cores, so where the
// time goes explains the tps; Others is time the benchmark did not use
// (other processes, and time the hypervisor stole), which skews a run.
type cpuUse struct {
	Pgbench  float64 `json:"pgbench"`
	Postgres float64 `json:"postgres"`
	Proxy    float64 `json:"proxy,omitempty"`
	Machine  float64 `json:"machine"`
	Others   float64 `json:"others"`
	// OthersShare is Others over the run's wall time on all CPUs.
	OthersShare float64 `json:"others_share"`
}

// cpuSnapshot is cumulative CPU time at one moment.
type cpuSnapshot struct {
	machine  float64
	postgres float64
	proxy    float64
}

// takeCPU reads the machine's busy time, PostgreSQL's (the postmaster and
// its backends, running or already gone) and, if proxyPID is not 0, the
// proxy's.
func takeCPU(postmasterPID, proxyPID int) (cpuSnapshot, error) {
	var s cpuSnapshot
	var err error
	if s.machine, err = machineBusy(); err != nil {
		return s, err
	}
	if s.postgres, err = childrenCPU(postmasterPID); err != nil {
		return s, err
	}
	if proxyPID != 0 {
		f, err := procStat(proxyPID)
		if err != nil {
			return s, err
		}
		s.proxy = ticks(f, 11, 12)
	}
	return s, nil
}

// machineBusy is the time all CPUs spent on anything but idling, from the
// first line of /proc/stat: user, nice, system, irq, softirq and steal.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("read machine CPU time: unexpected /proc/stat line %q", line)
	}
	// cpu user nice system idle iowait irq softirq steal
	return ticks(f, 1, 2, 3, 6, 7, 8), nil
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
		f, err := procStat(pid)
		if err != nil {
			continue // it exited meanwhile
		}
		switch {
		case pid == parent:
			total += ticks(f, 11, 12, 13, 14) // utime, stime, cutime, cstime
		case f[1] == strconv.Itoa(parent): // ppid
			total += ticks(f, 11, 12)
		}
	}
	return total, nil
}

// procStat returns the fields of /proc/PID/stat after the command name,
// so that f[0] is the state (field 3 in proc(5)), f[11] utime (field 14).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: it ends at the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("read /proc/%d/stat: unexpected %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("read /proc/%d/stat: unexpected %q", pid, b)
	}
	return f, nil
}

// ticks sums the fields at idx, in clock ticks, as seconds.
func ticks(f []string, idx ...int) float64 {
	var n int64
	for _, i := range idx {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		n += v
	}
	return float64(n) / clockTicks
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
