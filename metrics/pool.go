package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolState is one database's pool of people's upstream connections and
// its connection budget.
type PoolState struct {
	Database string
	// Open counts connections in use or idle, and logins under way; Idle
	// the pooled ones; Waiting the sessions waiting for the budget now.
	Open, Idle, Waiting int
	// MaxConnections is the budget; 0 for none.
	MaxConnections int

	Reused, Logins, Waits, Timeouts uint64
	WaitTime                        time.Duration
	Evicted, Expired, Drained       uint64
}

type poolCollector struct {
	read func() []PoolState

	open, idle, waiting, max                          *prometheus.Desc
	reused, logins, waits, waitTime, timeouts, closed *prometheus.Desc
}

// NewPoolCollector exports each database's pool sizes, waits for its
// connection budget and time-outs, read at each scrape.
func NewPoolCollector(read func() []PoolState) prometheus.Collector {
	db := []string{"database"}
	return &poolCollector{read: read,
		open:     prometheus.NewDesc("keygate_pool_connections", "Upstream connections keygate holds to the database: in use, pooled, and logins under way.", db, nil),
		idle:     prometheus.NewDesc("keygate_pool_idle_connections", "Pooled upstream connections waiting for their person's next session.", db, nil),
		waiting:  prometheus.NewDesc("keygate_pool_waiting_sessions", "Sessions waiting now for the database's connection budget.", db, nil),
		max:      prometheus.NewDesc("keygate_pool_max_connections", "The database's max_connections budget; 0 when none is set.", db, nil),
		reused:   prometheus.NewDesc("keygate_pool_reused_total", "Sessions served by a pooled connection, without an upstream login.", db, nil),
		logins:   prometheus.NewDesc("keygate_pool_logins_total", "Sessions that needed a new upstream login.", db, nil),
		waits:    prometheus.NewDesc("keygate_pool_waits_total", "Sessions that waited for the connection budget.", db, nil),
		waitTime: prometheus.NewDesc("keygate_pool_wait_seconds_total", "Time sessions spent waiting for the connection budget.", db, nil),
		timeouts: prometheus.NewDesc("keygate_pool_timeouts_total", "Sessions refused because the connection budget stayed spent for queue_timeout.", db, nil),
		closed: prometheus.NewDesc("keygate_pool_closed_total", "Pooled connections closed: evicted (to make room), expired (idle_timeout) or drained (their person lost access).",
			[]string{"database", "reason"}, nil)}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.idle, c.waiting, c.max, c.reused, c.logins, c.waits, c.waitTime, c.timeouts, c.closed} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.read() {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, p.Database)
		}
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{p.Database}, labels...)...)
		}
		gauge(c.open, float64(p.Open))
		gauge(c.idle, float64(p.Idle))
		gauge(c.waiting, float64(p.Waiting))
		gauge(c.max, float64(p.MaxConnections))
		counter(c.reused, float64(p.Reused))
		counter(c.logins, float64(p.Logins))
		counter(c.waits, float64(p.Waits))
		counter(c.waitTime, p.WaitTime.Seconds())
		counter(c.timeouts, float64(p.Timeouts))
		counter(c.closed, float64(p.Evicted), "evicted")
		counter(c.closed, float64(p.Expired), "expired")
		counter(c.closed, float64(p.Drained), "drained")
	}
}
