package api

import (
	"net/http"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/authz"
)

// listDatabases answers `keygate db list`: every database and level the
// signed-in person may use through this session, and what grants it. Each
// answer is the decision the token endpoint would make for that database
// and level; nothing here decides on its own.
func (s *Server) listDatabases(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	out := []DatabaseAccess{}
	for _, db := range s.Authz.Databases() {
		for _, l := range access.Levels {
			d, err := s.Authz.Authorize(r.Context(), authz.Request{User: sess.User, Database: db, Level: l, SignIn: sess.ID})
			if err != nil {
				return err
			}
			if !d.Allowed {
				continue
			}
			out = append(out, DatabaseAccess{Database: db, Access: string(l), PermissionSet: d.Grant.PermissionSet.Name,
				Group: d.Grant.Group, TokenTTL: d.TokenTTL().String(), Reason: d.Reason})
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
