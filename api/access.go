package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store"
)

// explainAccess answers "may this person reach this database, and why":
// at one level with ?access=, else at every level, from live state and
// the current rules, as the token endpoint and the gateway would decide.
func (s *Server) explainAccess(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	user, db := q.Get("user"), q.Get("db")
	if user == "" || db == "" {
		return errorf(http.StatusBadRequest, "name a person and a database: ?user=alice&db=orders")
	}
	levels := access.Levels
	if a := q.Get("access"); a != "" {
		l, err := access.ParseLevel(a)
		if err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		levels = []access.Level{l}
	}
	out := Explanation{User: user, Database: db, MFA: q.Get("mfa") == "true", Decisions: []AccessDecision{}}
	for _, l := range levels {
		d, err := s.Authz.Authorize(r.Context(), authz.Request{User: user, Database: db, Level: l, AssumeMFA: out.MFA})
		if err != nil {
			return err
		}
		ad := AccessDecision{Access: string(l), Allowed: d.Allowed, Reason: d.Reason, Policy: d.Policy, Deny: d.Deny, Condition: d.Condition}
		if d.Allowed {
			ad.PermissionSet, ad.Group, ad.TokenTTL = d.Grant.PermissionSet.Name, d.Grant.Group, d.TokenTTL().String()
		}
		out.Decisions = append(out.Decisions, ad)
	}
	return writeJSON(w, http.StatusOK, out)
}

// whoWindow is how far back "who connected" looks unless told.
const whoWindow = 24 * time.Hour

// whoCan answers who could reach a database at a moment (?at=, default
// now) and, from the audit log, who connected in a window (?since= and
// ?until=, default the day before that moment).
func (s *Server) whoCan(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	db := q.Get("db")
	if db == "" {
		return errorf(http.StatusBadRequest, "name a database: ?db=orders")
	}
	times := map[string]time.Time{}
	for _, k := range []string{"at", "since", "until"} {
		if v := q.Get(k); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return errorf(http.StatusBadRequest, "%s: use RFC 3339, such as 2026-11-23T10:00:00Z", k)
			}
			times[k] = t
		}
	}
	// Without ?at= the answer is about now, from the rules in force
	// rather than the newest in the history.
	at := times["at"]
	holders, err := s.Authz.WhoCan(r.Context(), db, at)
	if errors.Is(err, authz.ErrUnknownDatabase) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	if at.IsZero() {
		at = s.Now()
	}
	until := times["until"]
	if until.IsZero() {
		until = at
	}
	since := times["since"]
	if since.IsZero() {
		since = until.Add(-whoWindow)
	}
	out := WhoAnswer{Database: db, At: at, Holders: holderViews(holders, false), Since: since, Until: until, Connected: []Connection{}}
	events, err := s.Store.ListAudit(r.Context(), store.AuditQuery{Type: audit.SessionStart, Database: db, Since: since, Until: until})
	if err != nil {
		return err
	}
	byUser := map[string]int{}
	for _, e := range events {
		i, ok := byUser[e.User]
		if !ok {
			i = len(out.Connected)
			byUser[e.User] = i
			out.Connected = append(out.Connected, Connection{User: e.User, First: e.Time, Access: []string{}})
		}
		c := &out.Connected[i]
		c.Sessions++
		c.Last = e.Time
		if !slices.Contains(c.Access, e.Access) {
			c.Access = append(c.Access, e.Access)
		}
	}
	slices.SortFunc(out.Connected, func(a, b Connection) int { return strings.Compare(a.User, b.User) })
	return writeJSON(w, http.StatusOK, out)
}

// holderViews shows holders, naming each one's database when withDatabase
// (an answer about one database names it once).
func holderViews(hs []authz.Holder, withDatabase bool) []Holder {
	out := make([]Holder, 0, len(hs))
	for _, h := range hs {
		v := Holder{User: h.User, Access: string(h.Level), Group: h.Group, PermissionSet: h.PermissionSet, RequireMFA: h.RequireMFA, Deleted: h.Deleted}
		if withDatabase {
			v.Database = h.Database
		}
		out = append(out, v)
	}
	return out
}

// review exports the whole grant matrix as it is now: for every database,
// everyone who could reach it and at which level, for access reviews.
func (s *Server) review(w http.ResponseWriter, r *http.Request) error {
	hs, err := s.Authz.WhoCanAll(r.Context(), time.Time{})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, holderViews(hs, true))
}

// findings lists the groups the group naming rule cannot use: names
// against the convention, and names that give a permission set or tag
// values that do not exist.
func (s *Server) findings(w http.ResponseWriter, r *http.Request) error {
	if s.Findings == nil {
		return errorf(http.StatusNotImplemented, "this server cannot list access findings")
	}
	out, err := s.Findings.AccessFindings(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
