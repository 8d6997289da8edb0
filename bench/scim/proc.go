package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ), which
// Linux fixes at 100 for user space.
const clockTicks = 100

// processCPU is pid's CPU time so far (user + system, all threads), in
// seconds.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after it. utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time of process %d: /proc/%d/stat has %d fields", pid, pid, len(f))
	}
	var sum float64
	for _, v := range f[11:13] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
		}
		sum += n
	}
	return sum / clockTicks, nil
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
	var sum float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("read machine CPU time: %w", err)
		}
		sum += n
	}
	return sum / clockTicks, nil
}

// readMemory returns VmRSS and VmHWM of pid in KiB.
func readMemory(pid int) (rss, hwm int64, err error) {
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

// sampler keeps the highest VmRSS of a process, read every 100 ms, until
// finish: VmHWM alone would not tell provisioning from the reads after it.
type sampler struct {
	pid  int
	max  int64
	quit chan struct{}
	done chan struct{}
}

func startSampling(pid int) *sampler {
	s := &sampler{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				// A read that fails means keygate is gone; the requests
				// report that.
				if rss, _, err := readMemory(s.pid); err == nil {
					s.max = max(s.max, rss)
				}
			}
		}
	}()
	return s
}

// finish stops sampling and returns the highest VmRSS seen, in KiB.
func (s *sampler) finish() int64 {
	close(s.quit)
	<-s.done
	return s.max
}

// dataFile is one of keygate's SQLite files and its size.
type dataFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// dataFiles lists the SQLite files in keygate's data_dir (the databases,
// their write-ahead logs and shared-memory indexes).
func dataFiles(dir string) ([]dataFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list data_dir: %w", err)
	}
	var out []dataFile
	for _, e := range entries {
		if !strings.Contains(e.Name(), ".db") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list data_dir: %w", err)
		}
		out = append(out, dataFile{Name: e.Name(), Bytes: fi.Size()})
	}
	slices.SortFunc(out, func(a, b dataFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// logProblems are the warnings and errors keygate logged: a SCIM request
// that failed inside keygate shows up here with its cause.
type logProblems struct {
	Count int      `json:"count"`
	First []string `json:"first,omitempty"`
}

func scanLog(path string) (logProblems, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return logProblems{}, fmt.Errorf("scan keygate's log: %w", err)
	}
	var p logProblems
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			p.Count++
			if len(p.First) < keepErrors {
				p.First = append(p.First, strings.TrimSpace(line))
			}
		}
	}
	return p, nil
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

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
