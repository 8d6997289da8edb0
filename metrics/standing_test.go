package metrics

import (
	"log/slog"
	"strings"
	"testing"
)

// Each scanned database exports its count, zero included; a database
// missing from the scan's results exports nothing.
func TestStandingCollector(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(NewStandingCollector(func() map[string]int { return map[string]int{"orders": 2, "billing": 0} }))
	got := scrape(t, Handler(reg, slog.New(slog.DiscardHandler)))
	for name, want := range map[string]float64{
		`keygate_standing_credentials{database="orders"}`:  2,
		`keygate_standing_credentials{database="billing"}`: 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "keygate_standing_credentials") && !strings.Contains(name, "orders") && !strings.Contains(name, "billing") {
			t.Errorf("unexpected series %s", name)
		}
	}
}
