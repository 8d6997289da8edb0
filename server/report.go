package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/upstream"
)

// standingScanTimeout bounds one database's scan for standing
// credentials, so that a database that hangs delays a report by at most
// this much and leaves the others' answers whole.
const standingScanTimeout = 10 * time.Second

// standingInterval is how often every database is scanned for the
// keygate_standing_credentials gauge: the scan queries each upstream's
// catalog, too much for every scrape.
const standingInterval = 10 * time.Minute

// auditPage is how many audit events a report reads at a time. A report
// keeps only one duration per session from them, so a window of a
// million sessions holds some megabytes, not the events themselves.
const auditPage = 1000

// credentialAgeTarget is the oldest a token should be when a session
// starts with it: no permission set issues tokens that live longer.
const credentialAgeTarget = access.MaxTokenTTL

// standingState is what each database's last scan for standing
// credentials found, for the metrics.
type standingState struct {
	mu sync.Mutex
	// counts are by database, only for those whose last scan succeeded.
	counts map[string]int
}

// set records a database's scan: a count, or nothing when it failed.
func (st *standingState) set(database string, n int, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.counts == nil {
		st.counts = map[string]int{}
	}
	if err != nil {
		delete(st.counts, database)
		return
	}
	st.counts[database] = n
}

// read copies the counts for a scrape.
func (st *standingState) read() map[string]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make(map[string]int, len(st.counts))
	for db, n := range st.counts {
		out[db] = n
	}
	return out
}

// Report makes the seeds' measures: the standing credentials every
// database has now, the age of tokens at session start and the time
// revocations took from the audit events since since, the size of the
// access rules, and the groups the naming rule cannot use. A database
// that cannot be scanned is named in the report with why, not an error.
func (s *Server) Report(ctx context.Context, since time.Time) (api.Report, error) {
	now := time.Now()
	out := api.Report{Generated: now, Since: since, Standing: s.scanStanding(ctx)}
	ages, err := s.auditDurations(ctx, audit.SessionStart, "token_age_ms", since, now)
	if err != nil {
		return api.Report{}, err
	}
	revoked, err := s.auditDurations(ctx, audit.SessionEnd, "revoked_after_ms", since, now)
	if err != nil {
		return api.Report{}, err
	}
	out.CredentialAge = summarise(ages, credentialAgeTarget)
	out.TimeToRevoke = summarise(revoked, time.Duration(s.cfg.Report.RevocationTarget))
	if sp := s.sprawl.Load(); sp != nil {
		out.Sprawl = api.Sprawl{PermissionSets: sp.PermissionSets, Assignments: sp.Assignments, Grants: sp.Grants, Warning: sp.Warning}
	}
	if out.Findings, err = s.AccessFindings(ctx); err != nil {
		return api.Report{}, fmt.Errorf("naming findings: %w", err)
	}
	return out, nil
}

// scanStanding asks every database at once for its standing credentials,
// each within standingScanTimeout, and records the counts for the
// metrics. A failed scan is logged and reported, and the database's
// gauge goes away until a scan succeeds.
func (s *Server) scanStanding(ctx context.Context) api.StandingReport {
	out := api.StandingReport{Credentials: []api.StandingCredential{}, ScanErrors: []api.ScanError{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, db := range s.upstreams.Databases {
		wg.Go(func() {
			found, err := scanOne(ctx, db)
			s.standing.set(name, len(found), err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Warn("scan for standing credentials failed; the database's count is unknown until a scan succeeds", "database", name, "err", err)
				out.ScanErrors = append(out.ScanErrors, api.ScanError{Database: name, Error: err.Error()})
				return
			}
			for _, f := range found {
				out.Credentials = append(out.Credentials, api.StandingCredential{Database: name, Name: f.Name, Why: f.Why, Managed: f.Managed})
			}
		})
	}
	wg.Wait()
	slices.SortFunc(out.Credentials, func(a, b api.StandingCredential) int {
		return cmp.Or(cmp.Compare(a.Database, b.Database), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(out.ScanErrors, func(a, b api.ScanError) int { return cmp.Compare(a.Database, b.Database) })
	return out
}

// scanOne scans one database within standingScanTimeout.
func scanOne(ctx context.Context, db upstream.Database) ([]upstream.Standing, error) {
	ctx, cancel := context.WithTimeout(ctx, standingScanTimeout)
	defer cancel()
	found, err := db.Standing(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan for standing credentials: %w", err)
	}
	return found, nil
}

// watchStanding keeps keygate_standing_credentials fresh: a scan at
// start, then every standingInterval.
func (s *Server) watchStanding(ctx context.Context) {
	t := time.NewTicker(standingInterval)
	defer t.Stop()
	for {
		s.scanStanding(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// standingCounts is what the metrics say of each database's standing
// credentials.
func (s *Server) standingCounts() map[string]int { return s.standing.read() }

// auditDurations reads the events of type typ in [since, until), a page
// at a time, and returns the duration each one's detail holds in
// milliseconds under key; events without it are skipped.
func (s *Server) auditDurations(ctx context.Context, typ, key string, since, until time.Time) ([]time.Duration, error) {
	var out []time.Duration
	q := store.AuditQuery{Type: typ, Since: since, Until: until, Limit: auditPage}
	for {
		page, err := s.store.ListAudit(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("read %s events for the report: %w", typ, err)
		}
		for _, e := range page {
			if ms, ok := detailMillis(e.Detail, key); ok {
				out = append(out, time.Duration(ms)*time.Millisecond)
			}
		}
		if len(page) < auditPage {
			return out, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// detailMillis reads a whole number of milliseconds from an event's
// detail. Detail that does not parse has no figure to give: the audit
// chain's own verification is what speaks to its integrity.
func detailMillis(detail []byte, key string) (int64, bool) {
	if len(detail) == 0 {
		return 0, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(detail, &fields); err != nil {
		return 0, false
	}
	raw, ok := fields[key]
	if !ok {
		return 0, false
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err != nil {
		return 0, false
	}
	return ms, true
}

// summarise gives the count, the nearest-rank p50 and p99 and the
// maximum of ds, and how many are over target. It sorts ds.
func summarise(ds []time.Duration, target time.Duration) api.Durations {
	out := api.Durations{Count: len(ds), TargetSeconds: target.Seconds()}
	if len(ds) == 0 {
		return out
	}
	slices.Sort(ds)
	out.P50Seconds = percentile(ds, 50).Seconds()
	out.P99Seconds = percentile(ds, 99).Seconds()
	out.MaxSeconds = ds[len(ds)-1].Seconds()
	for _, d := range ds {
		if d > target {
			out.OverTarget++
		}
	}
	return out
}

// percentile is the nearest-rank p-th percentile of sorted, which is not
// empty: the smallest value at least p% of the values are at or below.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
