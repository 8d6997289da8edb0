package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	if e.Chain != "" {
		ae.Node, ae.NodeSeq = e.Chain, e.ChainSeq
	}
	if len(e.Detail) > 0 {
		if err := json.Unmarshal(e.Detail, &ae.Detail); err != nil {
			return ae, fmt.Errorf("audit event %d detail: %w", e.Seq, err)
		}
	}
	return ae, nil
}

// auditTextMax bounds the text filter q: a search, not a way to make
// the server compare megabytes against every event.
const auditTextMax = 200

// auditFilter is what GET /v1/admin/audit selects: the store's filters,
// and Text, which the store cannot filter on and the API matches itself
// (see MatchesText).
type auditFilter struct {
	store.AuditQuery
	Text string
}

// auditQuery reads the filters of GET /v1/admin/audit: user, database,
// type, since and until (RFC 3339), after (a sequence number) and q, text
// to find in the query, reason, actor or user.
func auditQuery(q url.Values) (auditFilter, error) {
	get := q.Get
	aq := store.AuditQuery{User: get("user"), Database: get("database"), Type: get("type"), Limit: auditPageMax}
	f := auditFilter{AuditQuery: aq, Text: strings.TrimSpace(get("q"))}
	if utf8.RuneCountInString(f.Text) > auditTextMax {
		return f, errorf(http.StatusBadRequest, "q: at most %d characters", auditTextMax)
	}
	for _, t := range []struct {
		name string
		into *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, errorf(http.StatusBadRequest, "%s: %v", t.name, err)
			}
			*t.into = tm
		}
	}
	if v := get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, errorf(http.StatusBadRequest, "after: want a sequence number, got %q", v)
		}
		f.AfterSeq = n
	}
	return f, nil
}

// MatchesText reports whether text occurs in the event's query, reason,
// actor or user, ignoring case: the audit search an administrator types
// a fragment of a statement or a name into. Empty text matches every
// event.
func (e AuditEvent) MatchesText(text string) bool {
	if text == "" {
		return true
	}
	text = strings.ToLower(text)
	for _, s := range []string{e.Query, e.Reason, e.Actor, e.User} {
		if strings.Contains(strings.ToLower(s), text) {
			return true
		}
	}
	return false
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

// auditPage reads one page of events for f, waiting up to wait for one to
// match when none does yet. The text filter applies after the store's:
// a page may then hold fewer events than the store read, and Next still
// says where the store stopped, so paging reads on past it.
func (s *Server) auditPage(ctx context.Context, f auditFilter, wait time.Duration) (AuditPage, error) {
	var waitCtx context.Context
	if wait > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	q := f.AuditQuery
	for {
		var events []store.AuditEvent
		var cursor int64
		var err error
		if wait > 0 {
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
			if ae.MatchesText(f.Text) {
				page.Events = append(page.Events, ae)
			}
		}
		if len(events) == q.Limit {
			page.Next = cursor
		}
		// A wait ends with an event that matches all the filters, not
		// one the text filter then drops.
		if wait == 0 || len(page.Events) > 0 || len(events) == 0 || waitCtx.Err() != nil || s.waits.isStopped() {
			return page, nil
		}
		q.AfterSeq = cursor
	}
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

func (w *waitStop) isStopped() bool {
	select {
	case <-w.get():
		return true
	default:
		return false
	}
}

func (w *waitStop) stop() {
	ch := w.get()
	w.stopped.Do(func() { close(ch) })
}

func (w *waitStop) get() chan struct{} {
	w.once.Do(func() { w.ch = make(chan struct{}) })
	return w.ch
}
