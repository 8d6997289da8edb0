package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/bench/internal/proc"
)

// call is one request of a phase.
type call struct {
	method, path string
	body         []byte
	// objects is how many users, groups or memberships the request
	// carries.
	objects int
	// check, if set, looks at the body of a 2xx answer: an error fails the
	// call as a non-2xx status does.
	check func(body []byte) error
}

// phaseResult is what one phase measured.
type phaseResult struct {
	Name    string `json:"name"`
	Workers int    `json:"workers"`
	// Requests counts the requests sent; Objects the users, groups or
	// memberships carried by those that succeeded.
	Requests int `json:"requests"`
	Objects  int `json:"objects"`
	// Errors counts transport errors, non-2xx answers and wrong answers.
	Errors      int      `json:"errors"`
	FirstErrors []string `json:"first_errors,omitempty"`

	Seconds           float64 `json:"seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	ObjectsPerSecond  float64 `json:"objects_per_second"`
	// Latency is over all answered requests, from sending to the last
	// byte of the answer.
	Latency latency `json:"latency"`
	// KeygateCPUSeconds and DriverCPUSeconds are user + system time,
	// all threads, during the phase: the two share the machine.
	KeygateCPUSeconds float64 `json:"keygate_cpu_seconds"`
	DriverCPUSeconds  float64 `json:"driver_cpu_seconds"`
	// OthersShare is the CPU time neither keygate nor the driver used
	// (other processes, time the hypervisor stole) over the phase's wall
	// time on all CPUs: above a tenth, the machine was shared.
	OthersShare float64 `json:"others_share"`
}

// latency percentiles, in milliseconds.
type latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// keepErrors is how many failure messages a phase keeps to show.
const keepErrors = 5

// runPhase sends calls with workers requests in flight, taking them in
// order, and measures them. keygatePID is the server whose CPU time is
// accounted.
func runPhase(ctx context.Context, c *client, name string, workers int, calls []call, keygatePID int) (*phaseResult, error) {
	res := &phaseResult{Name: name, Workers: workers, Requests: len(calls)}
	elapsed := make([]time.Duration, len(calls))
	answered := make([]bool, len(calls))
	var objects, errs atomic.Int64
	var mu sync.Mutex
	fail := func(cl call, msg string) {
		errs.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(res.FirstErrors) < keepErrors {
			res.FirstErrors = append(res.FirstErrors, cl.method+" "+cl.path+": "+msg)
		}
	}

	cpuBefore, err := proc.ProcessCPU(keygatePID)
	if err != nil {
		return nil, err
	}
	machineBefore, err := proc.MachineBusy()
	if err != nil {
		return nil, err
	}
	selfBefore := selfCPU()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(calls)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(calls) {
					return
				}
				cl := calls[i]
				a, err := c.do(ctx, cl.method, cl.path, cl.body)
				if err != nil {
					if ctx.Err() == nil {
						fail(cl, err.Error())
					}
					continue
				}
				elapsed[i], answered[i] = a.elapsed, true
				if a.status < 200 || a.status > 299 {
					fail(cl, fmt.Sprintf("%d: %s", a.status, excerpt(a.body)))
					continue
				}
				if cl.check != nil {
					if err := cl.check(a.body); err != nil {
						fail(cl, fmt.Sprintf("%d but %v: %s", a.status, err, excerpt(a.body)))
						continue
					}
				}
				objects.Add(int64(cl.objects))
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cpuAfter, err := proc.ProcessCPU(keygatePID)
	if err != nil {
		return nil, err
	}
	machineAfter, err := proc.MachineBusy()
	if err != nil {
		return nil, err
	}

	res.Objects, res.Errors = int(objects.Load()), int(errs.Load())
	res.Seconds = wall.Seconds()
	if res.Seconds > 0 {
		res.RequestsPerSecond = float64(res.Requests) / res.Seconds
		res.ObjectsPerSecond = float64(res.Objects) / res.Seconds
	}
	var done []time.Duration
	for i, ok := range answered {
		if ok {
			done = append(done, elapsed[i])
		}
	}
	res.Latency = percentiles(done)
	res.KeygateCPUSeconds = cpuAfter - cpuBefore
	res.DriverCPUSeconds = selfCPU() - selfBefore
	others := max(0, machineAfter-machineBefore-res.KeygateCPUSeconds-res.DriverCPUSeconds)
	res.OthersShare = others / (wall.Seconds() * float64(runtime.NumCPU()))
	return res, nil
}

// percentiles by nearest rank.
func percentiles(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	return latency{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// excerpt is the start of a response body, on one line, for error messages.
func excerpt(b []byte) string {
	const keep = 300
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) <= keep {
		return s
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// selfCPU is the driver's own CPU time so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
