// Package metricstest reads what a /metrics endpoint serves, for tests.
package metricstest

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Samples reads the Prometheus text format from r and returns each sample
// by its series as written, such as `name{label="value"}`.
func Samples(t testing.TB, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	return out
}
