package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/sso/saml"
)

// SAMLStatus is the part of the SAML provider that SAMLCollector reads.
type SAMLStatus interface {
	Status() saml.Status
}

var (
	samlCertExpiry = prometheus.NewDesc("keygate_saml_idp_certificate_expiry_timestamp_seconds",
		"When each trusted signing certificate of the SAML identity provider expires (its NotAfter), in Unix seconds.",
		[]string{"fingerprint", "subject"}, nil)
	samlCertExpiring = prometheus.NewDesc("keygate_saml_idp_certificate_expiring",
		"1 when a trusted signing certificate of the SAML identity provider expires within 14 days (or has expired), else 0.",
		nil, nil)
	samlRefreshFailures = prometheus.NewDesc("keygate_saml_metadata_refresh_failures_total",
		"Refreshes of the SAML identity provider's metadata that failed since start.",
		nil, nil)
	samlLastSuccess = prometheus.NewDesc("keygate_saml_metadata_last_success_timestamp_seconds",
		"When the SAML identity provider's metadata was last read successfully, in Unix seconds.",
		nil, nil)
)

// SAMLCollector exports the SAML identity provider's metadata state: the
// same certificate-expiry and refresh conditions that raise sso.warning
// audit events, as series an alert can watch. It reads the provider's
// status at each scrape, so a certificate that leaves the metadata leaves
// the metrics with it.
type SAMLCollector struct {
	p SAMLStatus
}

var _ prometheus.Collector = (*SAMLCollector)(nil)

// NewSAMLCollector returns a collector for p.
func NewSAMLCollector(p SAMLStatus) *SAMLCollector { return &SAMLCollector{p: p} }

// Describe implements prometheus.Collector.
func (c *SAMLCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{samlCertExpiry, samlCertExpiring, samlRefreshFailures, samlLastSuccess} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SAMLCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Status()
	expiring := 0.0
	for _, cert := range s.Certs {
		ch <- prometheus.MustNewConstMetric(samlCertExpiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.Fingerprint, cert.Subject)
		if cert.Expiring {
			expiring = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(samlCertExpiring, prometheus.GaugeValue, expiring)
	ch <- prometheus.MustNewConstMetric(samlRefreshFailures, prometheus.CounterValue, float64(s.RefreshFailures))
	ch <- prometheus.MustNewConstMetric(samlLastSuccess, prometheus.GaugeValue, float64(s.Refreshed.UnixNano())/1e9)
}
