package sso

import (
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/store"
)

// Device authorization (RFC 8628): `keygate login` asks for a device code,
// shows the person a user code and a URL, and polls until the browser side
// has signed in.
//
// Flows live in the store, so that the browser may finish on another
// server than the one the CLI polls. The store sees the device code only
// hashed, and the session credential a flow hands out is sealed (HPKE) to
// a key pair derived from the device code: neither a reader of the state
// database nor the server that finishes the flow can open it, only the
// poll that presents the device code.

const (
	// DeviceCodeTTL is how long a device code waits for the browser.
	DeviceCodeTTL = 10 * time.Minute
	// PollInterval is the interval the CLI is told to poll at.
	PollInterval = 2 * time.Second
	// maxFlows bounds pending flows against a caller that only asks.
	maxFlows = 10000
)

// Kinds of pending entries in the store.
const (
	kindFlow       = "device_flow"   // by normalised user code
	kindDeviceCode = "device_code"   // by the device code's hash; the value is the user code
	kindAttempt    = "signin"        // a device flow's browser attempt, by attemptKey
	kindBrowser    = "signin_portal" // the portal's browser attempt, by attemptKey
)

// userCodeAlphabet has no vowels (no words) and no look-alikes, as RFC 8628
// §6.1 suggests; 20^8 codes.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// flow is one pending device authorization, as the store keeps it.
type flow struct {
	userCode string // the key; not in the value
	raw      []byte // the value as read, which a swap must still find

	Client    string    `json:"client"` // what the CLI says it runs on, shown in the browser
	Expires   time.Time `json:"expires"`
	LastPoll  time.Time `json:"last_poll,omitzero"`
	PublicKey []byte    `json:"public_key"` // derived from the device code
	// Attempt is the key of the flow's newest browser attempt: a flow
	// keeps only that one.
	Attempt string `json:"attempt,omitempty"`
	// Claimed is set when a browser's sign-in comes back for the flow:
	// only the first may finish it.
	Claimed bool `json:"claimed,omitempty"`
	// Set once the browser side ends:
	Done    bool     `json:"done,omitempty"`
	Refusal *refusal `json:"refusal,omitempty"`
	// Sealed is the approval, sealed to PublicKey.
	Sealed []byte `json:"sealed,omitempty"`
}

// refusal is a Refusal as a flow keeps it for the CLI.
type refusal struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// approval is what an approved flow hands the CLI, once.
type approval struct {
	Credential string      `json:"credential"`
	Session    SessionInfo `json:"session"`
}

// SessionInfo describes a sign-in session to the CLI.
type SessionInfo struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires_at"`
	MFA     bool      `json:"mfa"`
	Method  string    `json:"method"`
}

// errTooManyFlows refuses a flow while maxFlows are pending.
var errTooManyFlows = errors.New("too many sign-ins are pending")

// normalizeUserCode accepts the code as typed: any case, with or without
// the dash or spaces.
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if strings.ContainsRune(userCodeAlphabet, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func formatUserCode(c string) string {
	if len(c) != 8 {
		return c
	}
	return c[:4] + "-" + c[4:]
}

func randomUserCode() string {
	b := make([]byte, 8)
	rand.Read(b)
	out := make([]byte, 8)
	for i := range b {
		// 256 is not a multiple of 20; rejection would remove the slight
		// bias, which does not matter for a code that lives ten minutes.
		out[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(out)
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// deviceCodeKey is the store's key for a device code: its hash, so that
// neither the store nor lookup timing learns the code.
func deviceCodeKey(deviceCode string) string {
	h := sha256.Sum256([]byte(deviceCode))
	return hex.EncodeToString(h[:])
}

// flowSuite is how an approval is sealed: X25519, HKDF-SHA256, AES-256-GCM.
var (
	flowKEM  = hpke.DHKEM(ecdh.X25519())
	flowKDF  = hpke.HKDFSHA256()
	flowAEAD = hpke.AES256GCM()
)

// flowInfo binds a sealed approval to its purpose.
var flowInfo = []byte("keygate device flow approval")

// flowKey derives the flow's key pair from its device code.
func flowKey(deviceCode string) (hpke.PrivateKey, error) {
	return flowKEM.DeriveKeyPair([]byte(deviceCode))
}

// startFlow makes a flow and returns its device code.
func (s *Service) startFlow(ctx context.Context, client string) (deviceCode string, fl *flow, err error) {
	now := s.now()
	n, err := s.opts.Store.CountPending(ctx, kindFlow, now)
	if err != nil {
		return "", nil, err
	}
	if n >= maxFlows {
		return "", nil, errTooManyFlows
	}
	deviceCode = randomToken()
	key, err := flowKey(deviceCode)
	if err != nil {
		return "", nil, fmt.Errorf("derive the flow's key: %w", err)
	}
	fl = &flow{Client: client, Expires: now.Add(DeviceCodeTTL), PublicKey: key.PublicKey().Bytes()}
	value, err := json.Marshal(fl)
	if err != nil {
		return "", nil, err
	}
	for created := false; !created; {
		fl.userCode = randomUserCode()
		created, _, err = s.opts.Store.PutPending(ctx, store.Pending{Kind: kindFlow, Key: fl.userCode, Value: value, Expires: fl.Expires}, now, 0)
		if err != nil {
			return "", nil, err
		}
	}
	fl.raw = value
	if _, _, err := s.opts.Store.PutPending(ctx, store.Pending{Kind: kindDeviceCode, Key: deviceCodeKey(deviceCode), Value: []byte(fl.userCode), Expires: fl.Expires}, now, 0); err != nil {
		return "", nil, err
	}
	return deviceCode, fl, nil
}

// getFlow reads the flow of a normalised user code; nil if there is none.
func (s *Service) getFlow(ctx context.Context, userCode string) (*flow, error) {
	p, err := s.opts.Store.GetPending(ctx, kindFlow, userCode)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeFlow(p)
}

func decodeFlow(p store.Pending) (*flow, error) {
	fl := &flow{userCode: p.Key, raw: p.Value}
	if err := json.Unmarshal(p.Value, fl); err != nil {
		return nil, fmt.Errorf("device flow %s: %w", p.Key, err)
	}
	return fl, nil
}

// pending reports whether the browser side may still finish fl.
func (fl *flow) pending(now time.Time) bool {
	return !now.After(fl.Expires) && !fl.Done && !fl.Claimed
}

// pendingFlow finds the flow of a user code as typed, if no browser has
// finished or claimed it yet.
func (s *Service) pendingFlow(ctx context.Context, code string) (*flow, bool, error) {
	fl, err := s.getFlow(ctx, normalizeUserCode(code))
	if err != nil || fl == nil || !fl.pending(s.now()) {
		return nil, false, err
	}
	return fl, true, nil
}

// maxSwaps bounds the retries of a flow update that keeps finding the
// flow changed by another request: polls change it every few seconds.
const maxSwaps = 8

// updateFlow applies change to the flow of userCode and stores the result
// if change reports it should, reading again when another request changed
// the flow meanwhile. It returns the flow as change left it, or nil when
// there is none.
func (s *Service) updateFlow(ctx context.Context, userCode string, change func(*flow) bool) (*flow, bool, error) {
	for range maxSwaps {
		fl, err := s.getFlow(ctx, userCode)
		if err != nil || fl == nil {
			return nil, false, err
		}
		if !change(fl) {
			return fl, false, nil
		}
		value, err := json.Marshal(fl)
		if err != nil {
			return nil, false, err
		}
		swapped, err := s.opts.Store.SwapPending(ctx, kindFlow, userCode, fl.raw, value)
		if err != nil {
			return nil, false, err
		}
		if swapped {
			fl.raw = value
			return fl, true, nil
		}
	}
	return nil, false, fmt.Errorf("device flow %s keeps changing", userCode)
}

// claim takes a pending flow for the browser sign-in that came back for
// it; a second browser coming back for the same code gets nothing.
func (s *Service) claim(ctx context.Context, userCode string) (*flow, error) {
	now := s.now()
	fl, claimed, err := s.updateFlow(ctx, userCode, func(fl *flow) bool {
		if !fl.pending(now) {
			return false
		}
		fl.Claimed = true
		return true
	})
	if !claimed {
		fl = nil
	}
	return fl, err
}

// finish records the browser side's outcome: the approval sealed to the
// flow's key, or the refusal.
func (s *Service) finish(ctx context.Context, fl *flow, a *approval, ref *Refusal) error {
	var sealed []byte
	if a != nil {
		pk, err := flowKEM.NewPublicKey(fl.PublicKey)
		if err != nil {
			return fmt.Errorf("device flow %s: its public key: %w", fl.userCode, err)
		}
		plain, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if sealed, err = hpke.Seal(pk, flowKDF, flowAEAD, flowInfo, plain); err != nil {
			return fmt.Errorf("seal the approval: %w", err)
		}
	}
	_, _, err := s.updateFlow(ctx, fl.userCode, func(fl *flow) bool {
		fl.Done, fl.Sealed = true, sealed
		if ref != nil {
			fl.Refusal = &refusal{Code: ref.Code, Reason: ref.Reason}
		}
		return true
	})
	return err
}

// pollResult is what a poll of the token endpoint gets.
type pollResult int

const (
	pollPending pollResult = iota
	pollSlowDown
	pollExpired
	pollDenied
	pollApproved
	pollUnknown
)

// poll answers the CLI. A flow that ended is taken from the store: of
// several polls racing for it, one gets the approval, so the credential is
// handed out exactly once.
func (s *Service) poll(ctx context.Context, deviceCode string) (pollResult, *flow, *approval, error) {
	now := s.now()
	dk := deviceCodeKey(deviceCode)
	p, err := s.opts.Store.GetPending(ctx, kindDeviceCode, dk)
	if errors.Is(err, store.ErrNotFound) {
		return pollUnknown, nil, nil, nil
	}
	if err != nil {
		return 0, nil, nil, err
	}
	userCode := string(p.Value)
	// waiting: the flow is neither over nor expired, and this poll is
	// noted on it.
	var tooSoon bool
	fl, waiting, err := s.updateFlow(ctx, userCode, func(fl *flow) bool {
		if now.After(fl.Expires) || fl.Done {
			return false
		}
		// RFC 8628 §3.5: a client polling faster than the interval is
		// told to slow down.
		tooSoon = !fl.LastPoll.IsZero() && now.Sub(fl.LastPoll) < PollInterval/2
		fl.LastPoll = now
		return true
	})
	if err != nil {
		return 0, nil, nil, err
	}
	switch {
	case fl == nil:
		s.forget(ctx, kindDeviceCode, dk)
		return pollUnknown, nil, nil, nil
	case waiting && tooSoon:
		return pollSlowDown, fl, nil, nil
	case waiting:
		return pollPending, fl, nil, nil
	}
	taken, err := s.opts.Store.TakePending(ctx, kindFlow, userCode)
	if errors.Is(err, store.ErrNotFound) {
		return pollUnknown, nil, nil, nil
	}
	if err != nil {
		return 0, nil, nil, err
	}
	s.forget(ctx, kindDeviceCode, dk)
	if fl, err = decodeFlow(taken); err != nil {
		return 0, nil, nil, err
	}
	switch {
	case now.After(fl.Expires):
		return pollExpired, fl, nil, nil
	case fl.Refusal != nil:
		return pollDenied, fl, nil, nil
	}
	key, err := flowKey(deviceCode)
	if err != nil {
		return 0, nil, nil, err
	}
	plain, err := hpke.Open(key, flowKDF, flowAEAD, flowInfo, fl.Sealed)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("open the approval of device flow %s: %w", userCode, err)
	}
	a := &approval{}
	if err := json.Unmarshal(plain, a); err != nil {
		return 0, nil, nil, fmt.Errorf("device flow %s: %w", userCode, err)
	}
	return pollApproved, fl, a, nil
}

// forget removes an entry nobody needs any more; one left behind expires.
func (s *Service) forget(ctx context.Context, kind, key string) {
	if _, err := s.opts.Store.TakePending(ctx, kind, key); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.opts.Log.Warn("forget pending sign-in state", "kind", kind, "err", err)
	}
}
