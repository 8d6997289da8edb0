package api

import (
	"net/http"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/authz"
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
		ad := AccessDecision{Access: string(l), Allowed: d.Allowed, Reason: d.Reason}
		if d.Allowed {
			ad.PermissionSet, ad.Group, ad.TokenTTL = d.Grant.PermissionSet.Name, d.Grant.Group, d.TokenTTL().String()
		}
		out.Decisions = append(out.Decisions, ad)
	}
	return writeJSON(w, http.StatusOK, out)
}
