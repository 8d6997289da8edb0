package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keygate/keygate/api"
)

// AuditFilter selects audit events. Zero fields do not filter.
type AuditFilter struct {
	User, Database, Type string
	// Since and Until bound the event times: Since included, Until not.
	Since, Until time.Time
	// Text is found, ignoring case, in the event's query, reason, actor
	// or user (the API's q).
	Text string
}

// followWait is how long one request of FollowAudit waits on the server
// for a new event before asking again.
const followWait = 30 * time.Second

// Audit calls fn for every matching event, oldest first, page by page.
func (c *Client) Audit(ctx context.Context, f AuditFilter, fn func(api.AuditEvent) error) error {
	_, err := c.auditPages(ctx, f, fn)
	return err
}

// FollowAudit calls fn for every event matching f from f.Since on (from
// now when it is zero), then for each new one as it is recorded, until ctx
// ends, when it returns nil. f.Until must be zero. The server holds each
// request until an event matches, so nothing is polled in a busy loop.
func (c *Client) FollowAudit(ctx context.Context, f AuditFilter, fn func(api.AuditEvent) error) error {
	if f.Since.IsZero() {
		f.Since = time.Now()
	}
	cursor, err := c.auditPages(ctx, f, fn)
	if err != nil {
		return err
	}
	// New events follow the cursor whatever their time says.
	f.Since = time.Time{}
	// Each request outlives the client's usual timeout; the context bounds
	// it instead, in case the server never answers.
	long := *c
	long.http = &http.Client{Transport: c.http.Transport}
	for {
		reqCtx, cancel := context.WithTimeout(ctx, followWait+30*time.Second)
		page, err := long.auditPage(reqCtx, f, cursor, followWait)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return err
			}
		}
		cursor = max(cursor, page.Next, page.Last)
	}
}

// auditPages calls fn for every event matching f, page by page, and
// returns the cursor past them: the "after" value for newer events.
func (c *Client) auditPages(ctx context.Context, f AuditFilter, fn func(api.AuditEvent) error) (int64, error) {
	var after int64
	for {
		page, err := c.auditPage(ctx, f, after, 0)
		if err != nil {
			return 0, err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return 0, err
			}
		}
		if page.Next == 0 {
			return max(after, page.Last), nil
		}
		after = page.Next
	}
}

// auditPage asks for one page of events after the sequence number after,
// waiting up to wait for one to match.
func (c *Client) auditPage(ctx context.Context, f AuditFilter, after int64, wait time.Duration) (api.AuditPage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"user": f.User, "database": f.Database, "type": f.Type, "q": f.Text} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, t := range map[string]time.Time{"since": f.Since, "until": f.Until} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var page api.AuditPage
	err := c.do(ctx, http.MethodGet, "/v1/admin/audit", q, nil, &page)
	return page, err
}
