package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

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
				if rss, _, err := proc.Memory(s.pid); err == nil {
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
