package sso

import "context"

// PendingAttempts counts the sign-in attempts s keeps, for tests of their
// bounds.
func PendingAttempts(s *Service) int {
	n := 0
	for _, kind := range []string{kindAttempt, kindBrowser} {
		c, err := s.opts.Store.CountPending(context.Background(), kind, s.now())
		if err != nil {
			panic(err)
		}
		n += c
	}
	return n
}

// MaxBrowserAttempts is how many portal sign-ins s keeps pending at once.
const MaxBrowserAttempts = maxBrowserAttempts
