package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/keygate/keygate/config"
)

// Reporter makes the seeds' measures: standing credentials now, and
// credential age and time-to-revoke from the audit events since a moment.
type Reporter interface {
	Report(ctx context.Context, since time.Time) (Report, error)
}

// reportWindow is how far back a report looks unless told.
const reportWindow = 24 * time.Hour

// report answers GET /v1/admin/report?since=: since is a duration ago
// (24h, 7d) or an RFC 3339 time, by default a day ago.
func (s *Server) report(w http.ResponseWriter, r *http.Request) error {
	if s.Report == nil {
		return errorf(http.StatusNotImplemented, "this server cannot make a report")
	}
	now := s.Now()
	since := now.Add(-reportWindow)
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := parseSince(v, now)
		if err != nil {
			return errorf(http.StatusBadRequest, "since: %v", err)
		}
		since = t
	}
	if !since.Before(now) {
		return errorf(http.StatusBadRequest, "since %s is not in the past", since.Format(time.RFC3339))
	}
	out, err := s.Report.Report(r.Context(), since)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// parseSince reads a duration ago (as the config writes durations, so
// 7d works) or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := config.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot read %q: use a duration such as 24h or 7d, or an RFC 3339 time such as 2026-11-23T10:00:00Z", v)
	}
	return t, nil
}
