package api

import (
	"net"
	"net/http"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/config"
)

// listDatabases answers `keygate db list`: every database and level the
// signed-in person may use through this session, and what grants it. Each
// answer is the decision the token endpoint would make for that database
// and level; nothing here decides on its own.
func (s *Server) listDatabases(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	out := []DatabaseAccess{}
	for _, db := range s.Authz.Databases() {
		var reach DatabaseReach
		if s.Reach != nil {
			reach, _ = s.Reach(db)
		}
		for _, l := range access.Levels {
			d, err := s.Authz.Authorize(r.Context(), authz.Request{User: sess.User, Database: db, Level: l, SignIn: sess.ID})
			if err != nil {
				return err
			}
			if !d.Allowed {
				continue
			}
			out = append(out, DatabaseAccess{Database: db, Access: string(l), PermissionSet: d.Grant.PermissionSet.Name,
				Group: d.Grant.Group, TokenTTL: d.TokenTTL().String(), Reason: d.Reason,
				Engine: reach.Engine, Address: reach.Address, Gateway: reach.Gateway})
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// DatabaseReach is where a database is and where clients reach it through
// keygate, as `keygate db list` shows it.
type DatabaseReach struct {
	// Engine is postgres or mysql.
	Engine string
	// Address is the upstream's address as configured, host:port.
	Address string
	// Gateway is keygate's listener for the engine as clients dial it,
	// host:port; empty when keygate has none.
	Gateway string
}

// ConfigReach answers Server.Reach from the config the server started
// with: engines and addresses change only on restart, as listeners do.
// gatewayAddr is the address the gateway of an engine listens on, "" for
// none, asked for each time so that a port chosen at start-up shows.
// Clients are sent
// to the first public hostname, the name keygate's certificate is issued
// for first, since the listener's own host (0.0.0.0, or an internal
// address) is often not one a client can dial and verify.
func ConfigReach(cfg *config.Config, gatewayAddr func(engine string) string) func(database string) (DatabaseReach, bool) {
	return func(database string) (DatabaseReach, bool) {
		d, ok := cfg.FindDatabase(database)
		if !ok {
			return DatabaseReach{}, false
		}
		r := DatabaseReach{Engine: d.Engine, Address: d.Address}
		if addr := gatewayAddr(d.Engine); addr != "" {
			r.Gateway = publicAddr(cfg.PublicHostnames, addr)
		}
		return r, true
	}
}

// publicAddr is listen with its host replaced by the first public
// hostname, when there is one.
func publicAddr(hostnames []string, listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || len(hostnames) == 0 {
		return listen
	}
	return net.JoinHostPort(hostnames[0], port)
}
