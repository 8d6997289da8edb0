package sso

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"time"
)

// Device authorization (RFC 8628): `keygate login` asks for a device code,
// shows the person a user code and a URL, and polls until the browser side
// has signed in. Flows live in memory: they last minutes, and a restarted
// server only means running `keygate login` again.

const (
	// DeviceCodeTTL is how long a device code waits for the browser.
	DeviceCodeTTL = 10 * time.Minute
	// PollInterval is the interval the CLI is told to poll at.
	PollInterval = 2 * time.Second
	// maxFlows bounds pending flows against a caller that only asks.
	maxFlows = 10000
)

// userCodeAlphabet has no vowels (no words) and no look-alikes, as RFC 8628
// §6.1 suggests; 20^8 codes.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// flow is one pending device authorization.
type flow struct {
	deviceHash [sha256.Size]byte
	userCode   string
	client     string // what the CLI says it runs on, shown in the browser
	expires    time.Time
	lastPoll   time.Time
	// claimed is set when a browser's sign-in comes back for the flow:
	// only the first may finish it.
	claimed bool
	// Set once the browser side ends:
	done       bool
	refusal    *Refusal
	credential string // the session credential, handed out once
	session    SessionInfo
}

// SessionInfo describes a sign-in session to the CLI.
type SessionInfo struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires_at"`
	MFA     bool      `json:"mfa"`
	Method  string    `json:"method"`
}

type flows struct {
	mu       sync.Mutex
	byUser   map[string]*flow // by normalised user code
	byDevice map[[sha256.Size]byte]*flow
}

func newFlows() *flows {
	return &flows{byUser: map[string]*flow{}, byDevice: map[[sha256.Size]byte]*flow{}}
}

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

// start makes a flow and returns its device code.
func (f *flows) start(now time.Time, client string) (deviceCode string, fl *flow, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now)
	if len(f.byUser) >= maxFlows {
		return "", nil, false
	}
	deviceCode = randomToken()
	fl = &flow{deviceHash: sha256.Sum256([]byte(deviceCode)), client: client, expires: now.Add(DeviceCodeTTL)}
	for {
		fl.userCode = randomUserCode()
		if _, taken := f.byUser[fl.userCode]; !taken {
			break
		}
	}
	f.byUser[fl.userCode] = fl
	f.byDevice[fl.deviceHash] = fl
	return deviceCode, fl, true
}

func (f *flows) sweep(now time.Time) {
	for _, fl := range f.byUser {
		if now.After(fl.expires) {
			f.forget(fl)
		}
	}
}

func (f *flows) forget(fl *flow) {
	delete(f.byUser, fl.userCode)
	delete(f.byDevice, fl.deviceHash)
}

// byUserCode finds a pending flow the browser side may still finish.
func (f *flows) byUserCode(now time.Time, code string) (*flow, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending(now, code)
}

// pending finds the flow of a user code that no browser has finished or
// claimed yet. The caller holds f.mu.
func (f *flows) pending(now time.Time, code string) (*flow, bool) {
	fl, ok := f.byUser[normalizeUserCode(code)]
	if !ok || now.After(fl.expires) || fl.done || fl.claimed {
		return nil, false
	}
	return fl, true
}

// claim takes a pending flow for the browser sign-in that came back for
// it; a second browser coming back for the same code gets nothing.
func (f *flows) claim(now time.Time, code string) (*flow, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.pending(now, code)
	if ok {
		fl.claimed = true
	}
	return fl, ok
}

// finish records the browser side's outcome.
func (f *flows) finish(fl *flow, credential string, info SessionInfo, refusal *Refusal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.done, fl.credential, fl.session, fl.refusal = true, credential, info, refusal
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

// poll answers the CLI. A device code that ended is forgotten: the
// credential is handed out exactly once. Flows are found by the SHA-256 of
// the device code, so lookup time says nothing about the code itself.
func (f *flows) poll(now time.Time, deviceCode string) (pollResult, *flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.byDevice[sha256.Sum256([]byte(deviceCode))]
	if !ok {
		return pollUnknown, nil
	}
	switch {
	case now.After(fl.expires):
		f.forget(fl)
		return pollExpired, fl
	case fl.done && fl.refusal != nil:
		f.forget(fl)
		return pollDenied, fl
	case fl.done:
		f.forget(fl)
		return pollApproved, fl
	}
	// RFC 8628 §3.5: a client polling faster than the interval is told to
	// slow down.
	tooSoon := !fl.lastPoll.IsZero() && now.Sub(fl.lastPoll) < PollInterval/2
	fl.lastPoll = now
	if tooSoon {
		return pollSlowDown, fl
	}
	return pollPending, fl
}
