package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/sso"
)

// The administration pages show and change what the admin API does, as
// the administrator who is signed in: the API decides and audits every
// call with their name. The portal checks whoami's Administrator first
// only to answer a person who is not one with a page that says why,
// rather than with the first API call's refusal; the API's own 403 still
// reaches the same page when the two disagree (administrators changed
// between the calls).

// adminRoute is one administration route. Exactly one of page, act and
// download is set: a page renders a template, an act handles a form post
// (with the portal's CSRF and origin checks) and a download writes its
// own response.
type adminRoute struct {
	pattern  string
	page     func(*Portal, *visit) (string, view, error)
	act      func(*Portal, *visit) (string, error)
	download func(*Portal, *visit) error
}

// adminRoutes are all the administration routes. registerAdmin serves
// each behind the administrator gate and the tests walk the same list,
// so a route added here is gated and tested as a non-administrator
// without anyone remembering to.
var adminRoutes = []adminRoute{
	{pattern: "GET /admin/{$}", page: (*Portal).adminOverview},
	{pattern: "GET /admin/posture", page: (*Portal).adminPosture},
	{pattern: "GET /admin/people", page: (*Portal).adminPeople},
	{pattern: "GET /admin/people/{name}", page: (*Portal).adminPerson},
	{pattern: "POST /admin/people/{name}/disable", act: (*Portal).adminDisable},
	{pattern: "POST /admin/people/{name}/enable", act: (*Portal).adminEnable},
	{pattern: "GET /admin/groups", page: (*Portal).adminGroups},
	{pattern: "GET /admin/groups/{name}", page: (*Portal).adminGroup},
	{pattern: "GET /admin/access", page: (*Portal).adminAccess},
	{pattern: "GET /admin/explain", page: (*Portal).adminExplain},
	{pattern: "GET /admin/who", page: (*Portal).adminWho},
	{pattern: "GET /admin/review", page: (*Portal).adminReview},
	{pattern: "GET /admin/review.csv", download: (*Portal).adminReviewCSV},
	{pattern: "GET /admin/review.json", download: (*Portal).adminReviewJSON},
	{pattern: "GET /admin/audit", page: (*Portal).adminAudit},
	{pattern: "GET /admin/sessions", page: (*Portal).adminSessions},
	{pattern: "POST /admin/sessions/end", act: (*Portal).adminEndSession},
	{pattern: "GET /admin/findings", page: (*Portal).adminFindings},
}

// adminSections are the links of the administration pages' own
// navigation, in its order.
var adminSections = []struct{ Key, Href, Label string }{
	{"overview", "/admin/", "Overview"},
	{"posture", "/admin/posture", "Posture"},
	{"people", "/admin/people", "People"},
	{"groups", "/admin/groups", "Groups"},
	{"access", "/admin/access", "Access rules"},
	{"explain", "/admin/explain", "Explain access"},
	{"who", "/admin/who", "Who can"},
	{"review", "/admin/review", "Access review"},
	{"audit", "/admin/audit", "Audit"},
	{"sessions", "/admin/sessions", "Sessions"},
	{"findings", "/admin/findings", "Findings"},
}

// errNotAdministrator answers a person whose session does not carry
// administrator rights, in the words of the problem page.
var errNotAdministrator = &client.Error{Status: http.StatusForbidden,
	Message: "Only keygate administrators can use these pages. Administrators are the members of the groups named in the server's config under administrators.groups; ask one of them if you need access."}

// registerAdmin adds the administration pages under /admin/, every one
// behind the administrator gate.
func (p *Portal) registerAdmin(mux *http.ServeMux) {
	for _, rt := range adminRoutes {
		mux.HandleFunc(rt.pattern, p.adminHandler(rt))
	}
}

// adminHandler serves rt for administrators only.
func (p *Portal) adminHandler(rt adminRoute) http.HandlerFunc {
	switch {
	case rt.page != nil:
		return p.page(func(v *visit) (string, view, error) {
			if !v.me.Administrator {
				return "", view{}, errNotAdministrator
			}
			name, data, err := rt.page(p, v)
			data.Nav = "admin"
			return name, data, err
		}, true)
	case rt.act != nil:
		return p.action(func(v *visit) (string, error) {
			if !v.me.Administrator {
				return "", errNotAdministrator
			}
			return rt.act(p, v)
		})
	case rt.download != nil:
		return func(w http.ResponseWriter, r *http.Request) {
			v, err := p.start(w, r)
			if err == nil {
				if !v.me.Administrator {
					err = errNotAdministrator
				} else if err = rt.download(p, v); err == nil {
					return
				}
			}
			p.fail(w, r, err, true)
		}
	}
	panic("portal: admin route " + rt.pattern + " has no handler")
}

// adminPage is what every administration page's data carries: the
// section for the navigation's aria-current, and links built in Go so
// that a name with / ? or # in it still links to its own page.
type adminPage struct {
	Section string
}

// Sections are the administration navigation's links.
func (adminPage) Sections() []struct{ Key, Href, Label string } { return adminSections }

// PersonHref links to a person's page.
func (adminPage) PersonHref(name string) string { return "/admin/people/" + url.PathEscape(name) }

// liveTable is the table of live gateway sessions with End buttons that
// the person page and the sessions page share (template "adminlive").
type liveTable struct {
	adminPage
	Live []api.LiveSession
	CSRF string
	// Back is the page the End buttons return to.
	Back string
	// ShowPerson adds the column of whose session it is.
	ShowPerson bool
	// Empty is the sentence shown when there is none.
	Empty string
}

// GroupHref links to a group's page.
func (adminPage) GroupHref(name string) string { return "/admin/groups/" + url.PathEscape(name) }

// ExplainHref links to the explanation of name's access to database.
func (adminPage) ExplainHref(name, database string) string {
	return "/admin/explain?" + url.Values{"user": {name}, "database": {database}}.Encode()
}

// WhoHref links to who can reach database.
func (adminPage) WhoHref(database string) string {
	return "/admin/who?" + url.Values{"database": {database}}.Encode()
}

// formTimeLayout is how a datetime-local input writes a moment; the
// pages read and show it as UTC, and say so on their labels.
const formTimeLayout = "2006-01-02T15:04"

// formTime reads a moment from a form field: as a datetime-local input
// writes it (UTC), with seconds, or RFC 3339. Empty is the zero time.
func formTime(field, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{formTimeLayout, "2006-01-02T15:04:05", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &client.Error{Status: http.StatusBadRequest,
		Message: fmt.Sprintf("%s: cannot read %q as a moment; use the date and time picker, or write 2026-11-23T10:00 (UTC)", field, v)}
}

// formTimeValue writes t for a datetime-local input, empty for zero.
func formTimeValue(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(formTimeLayout)
}

// adminBack is where the end-session action returns to: a page of the
// administration, given by the form, else the sessions page. It is a
// bare path, never another site or a path that leaves /admin/.
func adminBack(back string) string {
	if sso.LocalPath(back) != back || !strings.HasPrefix(back, "/admin/") || strings.ContainsAny(back, "?#") ||
		strings.Contains(back, "..") || strings.Contains(back, "//") {
		return "/admin/sessions"
	}
	return back
}

type overviewData struct {
	adminPage
	// Report is nil when the server cannot make one; ReportProblem then
	// says why.
	Report        *reportSummary
	ReportProblem string
}

// adminOverview links to each section, with the posture's key numbers
// from the default window.
func (p *Portal) adminOverview(v *visit) (string, view, error) {
	d := overviewData{adminPage: adminPage{Section: "overview"}}
	r, err := v.api.Report(v.r.Context(), "")
	var ce *client.Error
	switch {
	case err == nil:
		s := summarize(r)
		d.Report = &s
	case errors.As(err, &ce) && ce.Status != http.StatusUnauthorized && ce.Status != http.StatusForbidden:
		d.ReportProblem = ce.Message
	default:
		return "", view{}, err
	}
	return "admin_overview", view{Title: "Administration", Data: d}, nil
}
