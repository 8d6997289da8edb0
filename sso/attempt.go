package sso

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/seal"
	"github.com/keygate/keygate/store"
)

// attemptTTL bounds the browser's trip to the identity provider and back.
const attemptTTL = 10 * time.Minute

// attemptCookie binds a sign-in attempt to the browser that started it.
const attemptCookie = "keygate_signin"

// attempt is one browser's trip to an identity provider: for a device
// flow, or, when Browser is set, for the portal. Attempts live in the
// store, so that the identity provider's answer may reach any server. The
// store keys them by the hash of their name (the cookie and the relay
// state), and they are sealed with a key derived from the name: what they
// hold (the OIDC PKCE verifier and nonce) is of no use to a reader of the
// state database.
type attempt struct {
	UserCode  string    `json:"user_code,omitempty"` // of the device flow; empty for the portal
	Browser   bool      `json:"browser,omitempty"`   // a portal sign-in, started at PathBrowserStart
	Next      string    `json:"next,omitempty"`      // where the portal sends the browser after it
	Method    string    `json:"method"`
	RequestID string    `json:"request_id,omitempty"` // SAML
	Nonce     string    `json:"nonce,omitempty"`      // OIDC
	Verifier  string    `json:"verifier,omitempty"`   // OIDC PKCE
	Expires   time.Time `json:"expires"`
}

// attemptKey keys attempts by a hash of their name.
func attemptKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// attemptBox seals an attempt under a key only its name gives.
func attemptBox(id string) (*seal.Box, error) {
	k := sha256.Sum256([]byte("keygate sign-in attempt\x00" + id))
	return seal.New(k[:])
}

// putAttempt stores a under its name id. Device flows' attempts are
// bounded by their flows; the portal's, which anyone can start with a
// GET, by maxBrowserAttempts, past which the one that expires first is
// forgotten (evicted).
func (s *Service) putAttempt(ctx context.Context, id string, a *attempt) (evicted bool, err error) {
	box, err := attemptBox(id)
	if err != nil {
		return false, err
	}
	plain, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	kind, limit := kindAttempt, 0
	if a.Browser {
		kind, limit = kindBrowser, maxBrowserAttempts
	}
	_, evicted, err = s.opts.Store.PutPending(ctx, store.Pending{Kind: kind, Key: attemptKey(id), Value: box.Seal(kind, plain), Expires: a.Expires}, s.now(), limit)
	return evicted, err
}

// takeStoredAttempt removes and opens the attempt named id; nil if there
// is none.
func (s *Service) takeStoredAttempt(ctx context.Context, id string) (*attempt, error) {
	for _, kind := range []string{kindAttempt, kindBrowser} {
		p, err := s.opts.Store.TakePending(ctx, kind, attemptKey(id))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		box, err := attemptBox(id)
		if err != nil {
			return nil, err
		}
		plain, err := box.Open(kind, p.Value)
		if err != nil {
			return nil, fmt.Errorf("open sign-in attempt: %w", err)
		}
		a := &attempt{}
		if err := json.Unmarshal(plain, a); err != nil {
			return nil, fmt.Errorf("sign-in attempt: %w", err)
		}
		return a, nil
	}
	return nil, nil
}

// flowAttempt stores the browser attempt of a device flow and makes it
// the flow's only one, forgetting the one before: one valid code posted
// to /device/start in a loop does not pile up attempts, and a browser
// only ever holds the newest attempt's cookie anyway.
func (s *Service) flowAttempt(ctx context.Context, userCode, id string, a *attempt) error {
	if _, err := s.putAttempt(ctx, id, a); err != nil {
		return err
	}
	var before string
	_, _, err := s.updateFlow(ctx, userCode, func(fl *flow) bool {
		before, fl.Attempt = fl.Attempt, attemptKey(id)
		return true
	})
	if err != nil {
		return err
	}
	if before != "" {
		s.forget(ctx, kindAttempt, before)
	}
	return nil
}
