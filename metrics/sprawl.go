package metrics

import "github.com/prometheus/client_golang/prometheus"

// SprawlState is the size of the access rules: how many permission sets
// and assignments there are, and how many grants they add up to.
type SprawlState struct {
	PermissionSets int
	Assignments    int
	// Grants counts distinct (person, database, level) grants; a grant at
	// rw counts ro and rw.
	Grants int
	// Warning is set when permission sets grew faster than people.
	Warning bool
}

// sprawlCollector reads SprawlState at each scrape.
type sprawlCollector struct {
	read                            func() SprawlState
	sets, assignments, grants, warn *prometheus.Desc
}

// NewSprawlCollector exports read's state as keygate_permission_sets,
// keygate_assignments, keygate_access_grants and
// keygate_access_sprawl_warning.
func NewSprawlCollector(read func() SprawlState) prometheus.Collector {
	return &sprawlCollector{
		read:        read,
		sets:        prometheus.NewDesc("keygate_permission_sets", "Permission sets in the running config.", nil, nil),
		assignments: prometheus.NewDesc("keygate_assignments", "Assignments in the running config.", nil, nil),
		grants:      prometheus.NewDesc("keygate_access_grants", "Distinct (person, database, level) grants, counted every 10 minutes.", nil, nil),
		warn:        prometheus.NewDesc("keygate_access_sprawl_warning", "1 when permission sets grew faster than active people over the last 30 days.", nil, nil),
	}
}

func (c *sprawlCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sets
	ch <- c.assignments
	ch <- c.grants
	ch <- c.warn
}

func (c *sprawlCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	warn := 0.0
	if st.Warning {
		warn = 1
	}
	ch <- prometheus.MustNewConstMetric(c.sets, prometheus.GaugeValue, float64(st.PermissionSets))
	ch <- prometheus.MustNewConstMetric(c.assignments, prometheus.GaugeValue, float64(st.Assignments))
	ch <- prometheus.MustNewConstMetric(c.grants, prometheus.GaugeValue, float64(st.Grants))
	ch <- prometheus.MustNewConstMetric(c.warn, prometheus.GaugeValue, warn)
}
