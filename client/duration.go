package client

import (
	"strconv"
	"time"
)

// HumanDuration writes a duration as people do, to the precision that
// matters at its size: 140ms, 1.2s, 3m12s, 24h, 3d4h.
func HumanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		d = d.Round(time.Millisecond)
	case d < time.Minute:
		d = d.Round(100 * time.Millisecond)
	case d < time.Hour:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Minute)
	}
	day := 24 * time.Hour
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
	case d < time.Hour:
		return units(d/time.Minute, "m", (d%time.Minute)/time.Second, "s")
	case d < 2*day:
		return units(d/time.Hour, "h", (d%time.Hour)/time.Minute, "m")
	}
	return units(d/day, "d", (d%day)/time.Hour, "h")
}

// units writes "3m12s", or "3m" when the smaller unit is zero.
func units(big time.Duration, bigUnit string, small time.Duration, smallUnit string) string {
	s := strconv.FormatInt(int64(big), 10) + bigUnit
	if small > 0 {
		s += strconv.FormatInt(int64(small), 10) + smallUnit
	}
	return s
}
