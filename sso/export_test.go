package sso

// PendingAttempts counts the browser attempts s keeps, for tests of its
// bounds.
func PendingAttempts(s *Service) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.attempts)
}

// MaxBrowserAttempts is how many portal sign-ins s keeps pending at once.
const MaxBrowserAttempts = maxBrowserAttempts
