// Package metrics exposes keygate's state to Prometheus. It adapts what the
// other packages already keep — the SAML provider's status, the gateway's
// session registry, the stream of audit events — into collectors that are
// read at scrape time, so that no package keeps a second copy of its state
// for monitoring and none but this one imports the Prometheus client.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keygate/keygate/audit"
)

// Path is where the metrics are served.
const Path = "/metrics"

// NewRegistry returns a registry with the Go runtime and process
// collectors. Each server owns its own registry rather than using the
// global default, so that two servers in one process (as in tests) do not
// collide and nothing a library registers globally is exposed unasked.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg's metrics in the Prometheus exposition format at GET
// Path. A collector that fails is logged and its metrics left out, rather
// than failing the whole scrape.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
	return mux
}

// GatewaySessions is the keygate_gateway_sessions gauge: the number of
// live gateway sessions, read from count at each scrape.
func GatewaySessions(count func() int) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_gateway_sessions",
		Help: "Live database sessions through the gateway.",
	}, func() float64 { return float64(count()) })
}

// StateFeedLag reports, on a state several servers share, how long ago
// this server last saw every change committed to it: about a second while
// the state database answers. Past 5 seconds the server starts no new
// session; alert well before.
func StateFeedLag(lag func() time.Duration) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_state_feed_lag_seconds",
		Help: "Seconds since this server last caught up with every change to the shared state database.",
	}, func() float64 { return lag().Seconds() })
}

// Recorder is the audit log as keygate's packages use it.
type Recorder interface {
	Record(e audit.Event)
	Flush(ctx context.Context) error
	Err() error
}

// AuditCounter passes audit events on to the audit log and counts them by
// type as keygate_audit_events_total. Event types are constants in
// keygate's code, never taken from a request, so the label stays bounded.
type AuditCounter struct {
	next    Recorder
	events  *prometheus.CounterVec
	failing *prometheus.Desc
	// tokenAge and revoked are the seeds' measures, read from the events
	// that carry them: the token's age when a session starts, and how long
	// a revoked session's backend outlived the change that revoked it.
	tokenAge, revoked prometheus.Histogram
}

var _ prometheus.Collector = (*AuditCounter)(nil)

// knownEventTypes are exported at zero from the start, so that an alert on
// the rate of, say, signin.refused works from the first refusal on.
var knownEventTypes = []string{
	audit.SessionStart, audit.SessionEnd, audit.Query, audit.QueryCancel, audit.ConnectRefused,
	audit.TokenIssued, audit.TokenRefused, audit.SignIn, audit.SignInRefused, audit.SignOut, audit.SSOWarning,
	audit.ConfigReload, audit.ConfigRefused, audit.AccessSprawl, audit.QueryRefused, audit.UpstreamIntrusion,
}

// NewAuditCounter wraps next.
func NewAuditCounter(next Recorder) *AuditCounter {
	a := &AuditCounter{next: next, events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_audit_events_total",
		Help: "Audit events recorded, by type.",
	}, []string{"type"}),
		failing: prometheus.NewDesc("keygate_audit_write_failing", "1 while the audit store refuses writes; no session starts then.", nil, nil),
		tokenAge: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keygate_token_age_seconds",
			Help:    "Age of the token a database session started with (credential age at use; the seeds' target is under an hour).",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 4 * 3600}}),
		revoked: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keygate_revocation_seconds",
			Help:    "From the change that revoked a session's access to its upstream backend gone (time-to-revoke; the seeds' target is under 15 minutes).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 60, 300, 900}})}
	for _, t := range knownEventTypes {
		a.events.WithLabelValues(t)
	}
	return a
}

// Record records e in the audit log and counts it.
func (a *AuditCounter) Record(e audit.Event) {
	a.next.Record(e)
	a.events.WithLabelValues(e.Type).Inc()
	switch e.Type {
	case audit.SessionStart:
		if ms, ok := e.Detail["token_age_ms"].(int64); ok {
			a.tokenAge.Observe(float64(ms) / 1000)
		}
	case audit.SessionEnd:
		if ms, ok := e.Detail["revoked_after_ms"].(int64); ok {
			a.revoked.Observe(float64(ms) / 1000)
		}
	}
}

// Flush waits until the audit log has stored every event recorded before.
func (a *AuditCounter) Flush(ctx context.Context) error { return a.next.Flush(ctx) }

// Err is the audit store's write error while writes fail.
func (a *AuditCounter) Err() error { return a.next.Err() }

// Describe implements prometheus.Collector.
func (a *AuditCounter) Describe(ch chan<- *prometheus.Desc) {
	a.events.Describe(ch)
	a.tokenAge.Describe(ch)
	a.revoked.Describe(ch)
	ch <- a.failing
}

// Collect implements prometheus.Collector.
func (a *AuditCounter) Collect(ch chan<- prometheus.Metric) {
	a.events.Collect(ch)
	a.tokenAge.Collect(ch)
	a.revoked.Collect(ch)
	v := 0.0
	if a.next.Err() != nil {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(a.failing, prometheus.GaugeValue, v)
}

// UpstreamState is what keygate knows of one upstream database's set-up.
type UpstreamState struct {
	Database string
	// Ready says keygate's admin role has every privilege keygate needs.
	Ready bool
	// HBA is 1 when the upstream lets keygate-managed roles log in only
	// from keygate, 0 when it lets them in from elsewhere, -1 when keygate
	// may not tell.
	HBA int
}

type upstreamCollector struct {
	read       func() []UpstreamState
	ready, hba *prometheus.Desc
}

// NewUpstreamCollector exports keygate_upstream_ready and
// keygate_upstream_hba_restricted per database, read at each scrape.
func NewUpstreamCollector(read func() []UpstreamState) prometheus.Collector {
	return &upstreamCollector{read: read,
		ready: prometheus.NewDesc("keygate_upstream_ready", "1 when keygate's admin role on the database has every privilege keygate needs; connections are refused otherwise.", []string{"database"}, nil),
		hba: prometheus.NewDesc("keygate_upstream_hba_restricted",
			"1 when the upstream's pg_hba.conf lets keygate-managed roles log in only from keygate, 0 when it lets them in from elsewhere, -1 when keygate may not read it.", []string{"database"}, nil)}
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.hba
}

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.read() {
		ready := 0.0
		if u.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, u.Database)
		ch <- prometheus.MustNewConstMetric(c.hba, prometheus.GaugeValue, float64(u.HBA), u.Database)
	}
}
