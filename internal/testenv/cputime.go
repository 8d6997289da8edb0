package testenv

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the CPU time this process has used, user and system: a
// benchmark that divides it by its operations measures its own work, which
// other load on the machine disturbs far less than wall time.
func CPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
