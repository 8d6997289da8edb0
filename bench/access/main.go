// Command access measures keygate's access decision at the size of a large
// company: 1,000 permission sets (half of them with attribute conditions),
// their assignments to groups by name, "*" and tag selector, deny rules,
// and 10,000 people in 1,000 groups. It times random decisions through
// access.Policy.Decide and prints p50/p90/p99 in microseconds, then times a
// sample through a plain cedar.Authorize over every policy, checking that
// both give the same answer, to show what the per-group index saves.
//
// The requirement it reports on: p99 of a decision under 50 µs. It
// measures and prints; it asserts nothing about speed.
//
//	go run ./bench/access
//	go run ./bench/access -decisions 1000000 -seed 7
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// goal is the p99 the requirement allows.
const goal = 50 * time.Microsecond

type options struct {
	sets, groups, people, databases, teams, denies int
	decisions, union                               int
	seed                                           uint64
	cpuProfile, memProfile                         string
}

func main() {
	var o options
	flag.IntVar(&o.sets, "sets", 1_000, "permission sets, each assigned to one or two groups")
	flag.IntVar(&o.groups, "groups", 1_000, "groups")
	flag.IntVar(&o.people, "people", 10_000, "people, most in 1-6 groups, one in 20 in 20-60")
	flag.IntVar(&o.databases, "databases", 200, "databases, tagged with environment, tier and team")
	flag.IntVar(&o.teams, "teams", 40, "distinct team tags")
	flag.IntVar(&o.denies, "denies", 40, "deny rules")
	flag.IntVar(&o.decisions, "decisions", 200_000, "decisions timed through Decide")
	flag.IntVar(&o.union, "union", 2_000, "decisions also timed through cedar.Authorize over every policy, and compared")
	flag.Uint64Var(&o.seed, "seed", 1, "seed for the rules, the people and the requests")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed decisions to this file")
	flag.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile after the timed decisions to this file")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/access:", err)
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/access:", err)
		os.Exit(1)
	}
}

func (o options) validate() error {
	for name, v := range map[string]int{"sets": o.sets, "groups": o.groups, "people": o.people, "databases": o.databases, "teams": o.teams, "decisions": o.decisions} {
		if v < 1 {
			return fmt.Errorf("-%s %d: at least 1", name, v)
		}
	}
	if o.denies < 0 || o.union < 0 {
		return fmt.Errorf("-denies and -union: 0 or more")
	}
	return nil
}

func run(o options, w io.Writer) error {
	fmt.Fprintf(w, "Go %s, GOMAXPROCS %d, %s/%s, load average %s\n", runtime.Version(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, loadAverage())
	p, err := newPlan(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Rules: %d permission sets (%d with conditions), %d assignments (%d by tag selector), %d deny rules\n",
		len(p.rules.PermissionSets), p.conditional, len(p.rules.Assignments), p.selectors, len(p.rules.Denies))
	fmt.Fprintf(w, "People: %d in %d groups, %d memberships; %d databases\n", len(p.people), o.groups, p.memberships, len(p.databases))

	m, err := measure(p, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Compiled %d Cedar policies in %s\n\n", m.policies, m.compile.Round(time.Millisecond))
	fmt.Fprintf(w, "%-34s %9s %8s %8s %8s %8s %8s\n", "decisions", "n", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs")
	for _, row := range m.rows {
		fmt.Fprintf(w, "%-34s %9d %8.1f %8.1f %8.1f %8.1f %8.1f\n", row.name, len(row.d),
			micros(pct(row.d, 50)), micros(pct(row.d, 90)), micros(pct(row.d, 99)), micros(pct(row.d, 99.9)), micros(pct(row.d, 100)))
	}
	all := m.rows[0].d
	fmt.Fprintf(w, "\n%.1f%% allowed, %.1f%% refused by a deny rule\n", 100*float64(m.allowed)/float64(len(all)), 100*float64(m.denied)/float64(len(all)))
	verdict := "meets"
	if pct(all, 99) >= goal {
		verdict = "misses"
	}
	fmt.Fprintf(w, "p99 of Decide %.1f µs %s the %s goal (load average now %s)\n", micros(pct(all, 99)), verdict, goal, loadAverage())
	if m.unionSampled > 0 {
		fmt.Fprintf(w, "cedar.Authorize over all %d policies agreed with Decide on %d of %d sampled requests; Decide's p50 is %.0f× faster\n",
			m.policies, m.unionSampled-m.mismatches, m.unionSampled, float64(pct(m.rows[len(m.rows)-1].d, 50))/float64(pct(m.sampled, 50)))
	}
	if m.mismatches > 0 {
		return fmt.Errorf("%d decisions differ from cedar.Authorize over the whole policy set", m.mismatches)
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// loadAverage is the 1, 5 and 15 minute load averages, or "unknown": the
// percentiles mean little when other processes held the CPUs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
