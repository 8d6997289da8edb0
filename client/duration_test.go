package client

import (
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0ms",
		140*time.Millisecond + 300*time.Microsecond: "140ms",
		1240 * time.Millisecond:                     "1.2s",
		59960 * time.Millisecond:                    "1m",
		3*time.Minute + 12*time.Second:              "3m12s",
		15 * time.Minute:                            "15m",
		time.Hour:                                   "1h",
		2*time.Hour + 5*time.Minute:                 "2h5m",
		24 * time.Hour:                              "24h",
		76 * time.Hour:                              "3d4h",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
