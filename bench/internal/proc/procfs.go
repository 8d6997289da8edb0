package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every
// Linux architecture Go supports.
const ClockTicks = 100

// Stat returns the fields of /proc/PID/stat after the command name, so
// that f[0] is the state (field 3 in proc(5)), f[11] utime (field 14).
func Stat(pid int) ([]string, error) {
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

// Ticks sums the fields at idx, in clock ticks, as seconds.
func Ticks(f []string, idx ...int) float64 {
	var n int64
	for _, i := range idx {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		n += v
	}
	return float64(n) / ClockTicks
}

// ProcessCPU is pid's CPU time so far (user + system, all threads), in
// seconds.
func ProcessCPU(pid int) (float64, error) {
	f, err := Stat(pid)
	if err != nil {
		return 0, err
	}
	return Ticks(f, 11, 12), nil
}

// MachineBusy is the time all CPUs spent on anything but idling, from the
// first line of /proc/stat: user, nice, system, irq, softirq and steal.
func MachineBusy() (float64, error) {
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
	return Ticks(f, 1, 2, 3, 6, 7, 8), nil
}

// Memory returns VmRSS and VmHWM of pid in KiB.
func Memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		// "VmRSS:	   23456 kB"
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory of process %d: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("read memory of process %d: no VmRSS in /proc/%d/status", pid, pid)
	}
	return rss, hwm, nil
}

// Machine describes the machine a benchmark ran on.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1, 5 and 15 minute
	// averages before the benchmark started its servers and after its last
	// run (which counts the benchmark's own load): a busy machine skews
	// the numbers.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

// DescribeMachine reads the machine, with the load before the run.
func DescribeMachine() Machine {
	return Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: readTrimmed("/proc/sys/kernel/osrelease"), LoadBefore: LoadAverage()}
}

// cpuModel is the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	for line := range strings.Lines(readTrimmed("/proc/cpuinfo")) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// LoadAverage is the first three fields of /proc/loadavg.
func LoadAverage() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Busy reports whether a LoadAverage's 1-minute figure is 1 or more.
func Busy(load string) bool {
	first, _, _ := strings.Cut(load, " ")
	v, err := strconv.ParseFloat(first, 64)
	return err == nil && v >= 1
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
