package server

import "fmt"

// health says why the server cannot do its work right now, nil when it
// can. The API answers GET /healthz with it, so that a monitor or load
// balancer learns at once what the server log says.
func (s *Server) health() error {
	if err := s.audit.Err(); err != nil {
		return fmt.Errorf("audit log cannot be written: %w; keygate starts no new session until it can", err)
	}
	if err := s.stateCurrent(); err != nil {
		return fmt.Errorf("%w; keygate starts no new session until it catches up", err)
	}
	return nil
}
