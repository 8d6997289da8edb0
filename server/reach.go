package server

import "github.com/keygate/keygate/config"

// gatewayAddr is the address keygate's gateway for engine listens on, ""
// for none, for the API's Reach (which keygate db list shows).
func (s *Server) gatewayAddr(engine string) string {
	switch engine {
	case config.EnginePostgres:
		return s.PostgresAddr()
	case config.EngineMySQL:
		return s.MySQLAddr()
	}
	return ""
}
