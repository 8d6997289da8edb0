package main

import (
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// memoryUse is a process's memory around and during one run, in KiB, from
// /proc/PID/status.
type memoryUse struct {
	// BeforeRSSKiB is VmRSS just before the run started.
	BeforeRSSKiB int64 `json:"before_rss_kib"`
	// MaxRSSKiB and MeanRSSKiB are over the samples taken during the run.
	MaxRSSKiB  int64 `json:"max_rss_kib"`
	MeanRSSKiB int64 `json:"mean_rss_kib"`
	Samples    int   `json:"samples"`
	// AfterRSSKiB is VmRSS right after the run.
	AfterRSSKiB int64 `json:"after_rss_kib"`
	// HWMKiB is VmHWM right after the run: the peak RSS since the
	// process started.
	HWMKiB int64 `json:"vm_hwm_kib"`
}

// sampleInterval is how often memory is read during a run.
const sampleInterval = 100 * time.Millisecond

// sampler reads a process's memory in the background.
type sampler struct {
	pid  int
	use  memoryUse
	quit chan struct{}
	done chan struct{}
}

// startSampling reads pid's memory now and every sampleInterval until
// finish.
func startSampling(pid int) (*sampler, error) {
	rss, _, err := proc.Memory(pid)
	if err != nil {
		return nil, err
	}
	s := &sampler{pid: pid, use: memoryUse{BeforeRSSKiB: rss}, quit: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	var sum int64
	for {
		select {
		case <-s.quit:
			if s.use.Samples > 0 {
				s.use.MeanRSSKiB = sum / int64(s.use.Samples)
			}
			return
		case <-t.C:
			rss, _, err := proc.Memory(s.pid)
			if err != nil {
				// The process is gone; pgbench reports the failure.
				continue
			}
			s.use.Samples++
			sum += rss
			s.use.MaxRSSKiB = max(s.use.MaxRSSKiB, rss)
		}
	}
}

// finish stops sampling and reads the memory after the run.
func (s *sampler) finish() (*memoryUse, error) {
	close(s.quit)
	<-s.done
	rss, hwm, err := proc.Memory(s.pid)
	if err != nil {
		return &s.use, err
	}
	s.use.AfterRSSKiB, s.use.HWMKiB = rss, hwm
	return &s.use, nil
}
