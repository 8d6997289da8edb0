package sso

// PendingAttempts counts the browser attempts s keeps, for tests of its
// bounds.
func PendingAttempts(s *Service) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.attempts)
}
