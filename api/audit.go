package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store"
)

// Long polls of GET /v1/admin/audit (wait=30s): the longest wait a request
// may ask for, and how often the store is looked at meanwhile. A look costs
// one read of the newest sequence number while nothing is new.
const (
	maxAuditWait  = 30 * time.Second
	auditWaitPoll = 200 * time.Millisecond
)

// AuditEventFrom is a stored audit event as the API shows it. The CLI uses
// it too when it reads data_dir directly, so both show the same thing.
func AuditEventFrom(e store.AuditEvent) (AuditEvent, error) {
	ae := AuditEvent{Seq: e.Seq, Time: e.Time, Type: e.Type, Actor: e.Actor, User: e.User, Database: e.Database, Access: e.Access,
		Query: e.Query, Client: e.Client, Reason: e.Reason, SessionID: e.SessionID}
	if len(e.Detail) > 0 {
		if err := json.Unmarshal(e.Detail, &ae.Detail); err != nil {
			return ae, fmt.Errorf("audit event %d detail: %w", e.Seq, err)
		}
	}
	return ae, nil
}

// auditQuery reads the filters of GET /v1/admin/audit: user, database,
// type, since and until (RFC 3339) and after (a sequence number).
func auditQuery(q url.Values) (store.AuditQuery, error) {
	get := q.Get
	aq := store.AuditQuery{User: get("user"), Database: get("database"), Type: get("type"), Limit: auditPageMax}
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return aq, errorf(http.StatusBadRequest, "%s: %v", f.name, err)
			}
			*f.into = t
		}
	}
	if v := get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return aq, errorf(http.StatusBadRequest, "after: want a sequence number, got %q", v)
		}
		aq.AfterSeq = n
	}
	return aq, nil
}

// auditWait reads the wait parameter: how long to hold the request while
// no event matches. It is capped at maxAuditWait.
func auditWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errorf(http.StatusBadRequest, "wait: want a duration such as 30s, got %q", v)
	}
	return min(d, maxAuditWait), nil
}

// auditPage reads one page of events for q, waiting up to wait for one to
// match when none does yet.
func (s *Server) auditPage(ctx context.Context, q store.AuditQuery, wait time.Duration) (AuditPage, error) {
	var events []store.AuditEvent
	var cursor int64
	var err error
	if wait > 0 {
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		events, cursor, err = audit.Wait(waitCtx, s.Store, q, auditWaitPoll, s.waits.stopping())
	} else {
		events, cursor, err = audit.Page(ctx, s.Store, q)
	}
	if err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{Events: make([]AuditEvent, 0, len(events)), Last: cursor}
	for _, e := range events {
		ae, err := AuditEventFrom(e)
		if err != nil {
			return AuditPage{}, err
		}
		page.Events = append(page.Events, ae)
	}
	if len(events) == q.Limit {
		page.Next = cursor
	}
	return page, nil
}

// StopWaiting answers the audit requests that wait for new events, now and
// from now on, so that shutting the HTTP server down does not wait for
// them. Register it with http.Server.RegisterOnShutdown.
func (s *Server) StopWaiting() { s.waits.stop() }

// waitStop is closed when the server shuts down. Its zero value is ready.
type waitStop struct {
	once    sync.Once
	ch      chan struct{}
	stopped sync.Once
}

func (w *waitStop) stopping() <-chan struct{} { return w.get() }

func (w *waitStop) stop() {
	ch := w.get()
	w.stopped.Do(func() { close(ch) })
}

func (w *waitStop) get() chan struct{} {
	w.once.Do(func() { w.ch = make(chan struct{}) })
	return w.ch
}
