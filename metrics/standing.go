package metrics

import "github.com/prometheus/client_golang/prometheus"

// standingCollector exports the standing credentials each database's last
// successful scan found.
type standingCollector struct {
	read     func() map[string]int
	standing *prometheus.Desc
}

// NewStandingCollector exports read's counts, by database, as
// keygate_standing_credentials. read gives only the databases whose last
// scan succeeded: one that could not be scanned exports nothing, so that
// an alert on the count is not quieted by a database that is down.
func NewStandingCollector(read func() map[string]int) prometheus.Collector {
	return &standingCollector{read: read,
		standing: prometheus.NewDesc("keygate_standing_credentials",
			"Logins on the database that reach it without keygate (password logins, superusers, and keygate's person roles not at rest), as last scanned; the target is 0.",
			[]string{"database"}, nil)}
}

func (c *standingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.standing }

func (c *standingCollector) Collect(ch chan<- prometheus.Metric) {
	for db, n := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.standing, prometheus.GaugeValue, float64(n), db)
	}
}
