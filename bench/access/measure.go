package main

import (
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

type row struct {
	name string
	d    []time.Duration
}

type measurement struct {
	compile      time.Duration
	policies     int
	rows         []row
	allowed      int
	denied       int
	sampled      []time.Duration // Decide on the requests the union also timed
	unionSampled int
	mismatches   int
}

func measure(p *plan, o options) (*measurement, error) {
	m := &measurement{}
	start := time.Now()
	policy, err := access.Compile(p.rules)
	if err != nil {
		return nil, err
	}
	m.compile = time.Since(start)
	ps := policy.PolicySet()
	for range ps.All() {
		m.policies++
	}

	r := rand.New(rand.NewPCG(o.seed, 0x72657175657374))
	type request struct {
		pr    identity.Principal
		db    access.Database
		level access.Level
	}
	reqs := make([]request, o.decisions)
	for i := range reqs {
		reqs[i] = request{p.people[r.IntN(len(p.people))], p.databases[r.IntN(len(p.databases))], access.Levels[r.IntN(len(access.Levels))]}
	}
	// Warm up the code and the heap on a second copy of the policy, so
	// that the timed one meets every person for the first time in the
	// timed loop: access caches what it learns about a person.
	warm, err := access.Compile(p.rules)
	if err != nil {
		return nil, err
	}
	for _, q := range reqs[:min(len(reqs), 10_000)] {
		warm.Decide(q.pr, q.db, q.level)
	}
	runtime.GC()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	// The thread is locked so that its CPU clock measures this goroutine.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, cpuClock := threadCPU()
	all := make([]time.Duration, len(reqs))
	var cpu []time.Duration
	var allowed, refused, many, first, again []time.Duration
	seen := make(map[string]bool, len(p.people))
	for i, q := range reqs {
		c0, _ := threadCPU()
		t := time.Now()
		d := policy.Decide(q.pr, q.db, q.level)
		all[i] = time.Since(t)
		if cpuClock {
			c1, _ := threadCPU()
			cpu = append(cpu, c1-c0)
		}
		if d.Allowed {
			m.allowed++
			allowed = append(allowed, all[i])
		} else {
			refused = append(refused, all[i])
		}
		if d.Deny != "" {
			m.denied++
		}
		if len(q.pr.Groups) >= 20 {
			many = append(many, all[i])
		}
		if seen[q.pr.UserName] {
			again = append(again, all[i])
		} else {
			first = append(first, all[i])
			seen[q.pr.UserName] = true
		}
	}
	pprof.StopCPUProfile()
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return nil, err
		}
	}
	m.rows = []row{{"Decide, all", all}, {"Decide, allowed", allowed}, {"Decide, refused", refused}, {"Decide, people in 20+ groups", many},
		{"Decide, a person's first", first}, {"Decide, a person's later ones", again}}
	if cpuClock {
		m.rows = append(m.rows, row{"Decide, CPU time of the thread", cpu})
	}

	n := min(o.union, len(reqs))
	if n == 0 {
		return m, nil
	}
	union := make([]time.Duration, n)
	for i, q := range reqs[:n] {
		req, ents := cedarRequest(q.pr, q.db, q.level)
		t := time.Now()
		dec, _ := cedar.Authorize(ps, ents, req)
		union[i] = time.Since(t)
		if (dec == cedar.Allow) != policy.Decide(q.pr, q.db, q.level).Allowed {
			m.mismatches++
		}
	}
	m.sampled = slices.Clone(all[:n])
	m.unionSampled = n
	m.rows = append(m.rows, row{"cedar.Authorize, all policies", union})
	return m, nil
}

// cedarRequest builds the request and entities the way access documents
// its model, independently of access's own code: the person in their
// groups, with their tags and an mfa attribute; the database with its tags.
func cedarRequest(pr identity.Principal, db access.Database, level access.Level) (cedar.Request, cedar.EntityMap) {
	person := cedar.NewEntityUID(access.PersonType, cedar.String(pr.UserName))
	database := cedar.NewEntityUID(access.DatabaseType, cedar.String(db.Name))
	var parents []cedar.EntityUID
	for _, g := range pr.Groups {
		parents = append(parents, cedar.NewEntityUID(access.GroupType, cedar.String(g)))
	}
	tags := func(m map[string]string) cedar.Record {
		rm := cedar.RecordMap{}
		for k, v := range m {
			rm[cedar.String(k)] = cedar.String(v)
		}
		return cedar.NewRecord(rm)
	}
	ents := cedar.EntityMap{
		person: {
			UID:        person,
			Parents:    cedar.NewEntityUIDSet(parents...),
			Attributes: cedar.NewRecord(cedar.RecordMap{"mfa": cedar.Boolean(pr.MFA)}),
			Tags:       tags(pr.Attributes),
		},
		database: {UID: database, Tags: tags(db.Tags)},
	}
	req := cedar.Request{
		Principal: person,
		Action:    cedar.NewEntityUID(access.ActionType, cedar.String(level)),
		Resource:  database,
		Context:   cedar.NewRecord(nil),
	}
	return req, ents
}

// pct is the q-th percentile of d (q in 0..100), by the nearest rank.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q/100*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}
