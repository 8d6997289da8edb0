package web

import (
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// auditShown is the most events the audit page lists: the newest that
// match. A longer answer is for keygate audit export, not a web page.
const auditShown = 500

// auditDefaultWindow is how far back the audit page searches when the
// form gives no start: reading the whole log on every visit would grow
// with it.
const auditDefaultWindow = 24 * time.Hour

type auditData struct {
	adminPage
	User, Database, Type, Q string
	Since, Until            string
	// SinceDefaulted says Since is the default window's start, not the
	// form's.
	SinceDefaulted bool
	// Events are the newest matching events, newest first; Matched how
	// many matched in all.
	Events  []api.AuditEvent
	Matched int
	Limit   int
}

// More says more events matched than the page shows.
func (d auditData) More() bool { return d.Matched > len(d.Events) }

// adminAudit searches the audit log: by person, database, event type,
// window and text in the query, reason, actor or user, showing the
// newest matches first.
func (p *Portal) adminAudit(v *visit) (string, view, error) {
	q := v.r.URL.Query()
	d := auditData{adminPage: adminPage{Section: "audit"}, Limit: auditShown,
		User: strings.TrimSpace(q.Get("user")), Database: strings.TrimSpace(q.Get("database")),
		Type: strings.TrimSpace(q.Get("type")), Q: strings.TrimSpace(q.Get("q"))}
	since, err := formTime("since", q.Get("since"))
	if err != nil {
		return "", view{}, err
	}
	until, err := formTime("until", q.Get("until"))
	if err != nil {
		return "", view{}, err
	}
	if since.IsZero() {
		since = p.opts.Now().Add(-auditDefaultWindow).Truncate(time.Minute)
		d.SinceDefaulted = true
	}
	d.Since, d.Until = formTimeValue(since), formTimeValue(until)
	// The API reads oldest first: keep the newest auditShown in a ring.
	ring := make([]api.AuditEvent, 0, auditShown)
	f := client.AuditFilter{User: d.User, Database: d.Database, Type: d.Type, Text: d.Q, Since: since, Until: until}
	err = v.api.Audit(v.r.Context(), f, func(e api.AuditEvent) error {
		if len(ring) < auditShown {
			ring = append(ring, e)
		} else {
			ring[d.Matched%auditShown] = e
		}
		d.Matched++
		return nil
	})
	if err != nil {
		return "", view{}, err
	}
	if d.Matched > auditShown {
		// Oldest first from the ring's start.
		start := d.Matched % auditShown
		ring = append(ring[start:], ring[:start]...)
	}
	slices.Reverse(ring)
	d.Events = ring
	return "admin_audit", view{Title: "Audit", Data: d}, nil
}

type adminSessionsData struct {
	adminPage
	LiveTable liveTable
	SignIns   []api.Session
	Back      string
}

// adminSessions lists everyone's live gateway sessions and sign-in
// sessions in force, each with a button that ends it.
func (p *Portal) adminSessions(v *visit) (string, view, error) {
	ctx := v.r.Context()
	live, err := v.api.ListLive(ctx, "", "")
	if err != nil {
		return "", view{}, err
	}
	// all=false: the sessions in force only, which are what can be ended.
	signIns, err := v.api.ListSessions(ctx, "", false)
	if err != nil {
		return "", view{}, err
	}
	return "admin_sessions", view{Title: "Sessions", Data: adminSessionsData{adminPage: adminPage{Section: "sessions"},
		SignIns: signIns, Back: "/admin/sessions",
		LiveTable: liveTable{Live: live, CSRF: v.csrf, Back: "/admin/sessions", ShowPerson: true, Empty: "Nobody has an open database session."}}}, nil
}

// adminEndSession ends anyone's live gateway session (kind live) or
// revokes their sign-in session (kind signin), then returns to the
// administration page the form came from.
func (p *Portal) adminEndSession(v *visit) (string, error) {
	ctx, id, back := v.r.Context(), v.r.PostForm.Get("id"), adminBack(v.r.PostForm.Get("back"))
	if id == "" {
		return "", badRequest("which session? Use the buttons on the sessions page.")
	}
	switch v.r.PostForm.Get("kind") {
	case "live":
		if _, err := v.api.EndLiveAdmin(ctx, id); err != nil {
			return "", err
		}
		return back + "?done=live-ended", nil
	case "signin":
		if _, err := v.api.RevokeSession(ctx, id); err != nil {
			return "", err
		}
		if id == v.me.SessionID {
			// The administrator revoked this browser's own session.
			clearCookie(v.w)
			return "/", nil
		}
		return back + "?done=session-ended", nil
	}
	return "", badRequest("unknown kind of session: use the buttons on the sessions page")
}
