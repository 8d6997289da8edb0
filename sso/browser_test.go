package sso_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/sso"
)

// The browser side must finish only in the browser that started it: the
// attempt cookie set by /device/start has to come back with the identity
// provider's answer, which carries the same value as RelayState (SAML) or
// state (OIDC). Otherwise an attacker could finish a victim's `keygate
// login` with the attacker's own identity provider session, or the other
// way round.

func aliceEnv(t *testing.T, configure func(*sso.Options)) *env {
	e := newEnv(t, configure)
	e.addUser(identity.User{UserName: "alice", Email: "alice@contoso.com", Active: true})
	e.saml.identity = sso.Identity{Method: "saml", UserName: "alice"}
	e.oidc.identity = sso.Identity{Method: "oidc", UserName: "alice"}
	return e
}

func TestACSBindsTheBrowser(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	c, loc := e.start(dc.UserCode, "saml")
	relay := loc.Query().Get("RelayState")

	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		relay  string
	}{
		{"no cookie", nil, relay},
		{"another browser's cookie", &http.Cookie{Name: cookieName, Value: otherFirst(c.Value)}, relay},
		{"relay state of another attempt", c, otherFirst(relay)},
		{"cookie without relay state", c, "   "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.saml.responses)
			wantPage(t, e.acs(tc.cookie, tc.relay, "response"), http.StatusForbidden, "Sign-in refused", "not started in this browser")
			if len(e.saml.responses) != before {
				t.Error("the response was validated before the browser was checked")
			}
			// The CLI's flow is untouched: only its own browser ends it.
			e.tick(sso.PollInterval)
			e.wantPollError(dc.DeviceCode, "authorization_pending")
		})
	}
	evs := e.wantRefusals("browser_mismatch", "browser_mismatch", "browser_mismatch", "browser_mismatch")
	if d := detail(t, evs[0]); d["method"] != "saml" || evs[0].Client != clientAddr || evs[0].Reason == "" {
		t.Errorf("refusal event %+v detail %v", evs[0], d)
	}

	// The browser that started it still can finish it.
	wantPage(t, e.acs(c, relay, "response"), http.StatusOK, "Signed in as alice")
	if a := e.poll(dc.DeviceCode); a.Status != http.StatusOK || a.Session.User != "alice" {
		t.Fatalf("poll = %d %s", a.Status, a.Error)
	}

	// An attempt is used once: the same answer posted again is refused.
	wantPage(t, e.acs(c, relay, "response"), http.StatusForbidden, "Sign-in refused")
	e.wantRefusals("browser_mismatch", "browser_mismatch", "browser_mismatch", "browser_mismatch", "unknown_request")
	if len(e.saml.responses) != 1 {
		t.Errorf("HandleResponse called %d times, want 1", len(e.saml.responses))
	}
	if len(e.events("signin")) != 1 {
		t.Error("the replayed response made a second session")
	}
}

func TestIdPInitiated(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		e := aliceEnv(t, nil)
		dc := e.deviceCode()
		c, _ := e.start(dc.UserCode, "saml")
		for _, ck := range []*http.Cookie{nil, c} {
			wantPage(t, e.acs(ck, "", "unsolicited"), http.StatusForbidden, "Sign-in refused", "did not ask for")
		}
		if len(e.saml.responses) != 0 {
			t.Error("an unsolicited response was validated")
		}
		e.wantRefusals("idp_initiated", "idp_initiated")
		e.wantPollError(dc.DeviceCode, "authorization_pending")
	})

	t.Run("on", func(t *testing.T) {
		e := aliceEnv(t, func(o *sso.Options) { o.IdPInitiated = true })
		wantPage(t, e.acs(nil, "", "unsolicited"), http.StatusOK, "Signed in as alice", "run keygate login")
		if got := e.saml.responses; len(got) != 1 || got[0].inResponseTo != "" || got[0].response != "unsolicited" {
			t.Errorf("HandleResponse calls %+v, want one for no request", got)
		}
		// With no `keygate login` waiting there is nobody to give a
		// session to.
		if ss, err := e.store.ListSessions(t.Context(), "alice"); err != nil || len(ss) != 0 {
			t.Errorf("sessions %v, %v; want none", ss, err)
		}
		e.saml.identity, e.saml.err = sso.Identity{}, sso.Refuse("bad_signature", nil, "the signature does not verify")
		wantPage(t, e.acs(nil, "", "forged"), http.StatusForbidden, "the signature does not verify")
		e.wantRefusals("bad_signature")
	})
}

func TestConnectorRefusalEndsTheFlow(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	e.wantPollError(dc.DeviceCode, "authorization_pending")
	e.tick(sso.PollInterval)

	const reason = "the response's signature does not verify against the identity provider's certificate"
	internal := errors.New("x509: digest mismatch at /Response/Signature")
	rec := e.signInSAML(dc.UserCode, sso.Identity{}, sso.Refuse("bad_signature", internal, reason))
	wantPage(t, rec, http.StatusForbidden, "Sign-in refused", reason)
	if strings.Contains(pageText(rec), "digest mismatch") {
		t.Error("the browser is shown the internal detail")
	}

	a := e.wantPollError(dc.DeviceCode, "access_denied")
	if a.Description != reason {
		t.Errorf("access_denied description %q, want %q", a.Description, reason)
	}
	e.tick(sso.PollInterval)
	e.wantPollError(dc.DeviceCode, "invalid_grant")

	ev := e.wantRefusals("bad_signature")[0]
	if d := detail(t, ev); d["method"] != "saml" || ev.Reason != reason || strings.Contains(string(ev.Detail), "digest") {
		t.Errorf("refusal event %+v detail %v", ev, d)
	}
	if len(e.events("signin")) != 0 {
		t.Error("a refused sign-in was audited as a sign-in")
	}
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "That code is unknown or has expired.")
}

func TestConnectorFailureIsNotShown(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	rec := e.signInSAML(dc.UserCode, sso.Identity{}, errors.New("dial tcp 10.0.0.5:443: connection refused"))
	wantPage(t, rec, http.StatusForbidden, "server log has details")
	a := e.wantPollError(dc.DeviceCode, "access_denied")
	if strings.Contains(pageText(rec)+a.Description, "10.0.0.5") {
		t.Error("the internal error reached the browser or the CLI")
	}
	e.wantRefusals("error")
}

func TestOIDCCallback(t *testing.T) {
	e := aliceEnv(t, nil)
	e.oidc.identity = sso.Identity{Method: "oidc", Subject: "248289761001", UserName: "alice", MFA: true}
	dc := e.deviceCode()
	c, loc := e.start(dc.UserCode, "oidc")
	state := loc.Query().Get("state")

	wantPage(t, e.callback(nil, url.Values{"state": {state}, "code": {"c0de"}}), http.StatusForbidden, "not started in this browser")
	wantPage(t, e.callback(c, url.Values{"state": {otherFirst(state)}, "code": {"c0de"}}), http.StatusForbidden, "not started in this browser")
	if len(e.oidc.exchanges) != 0 {
		t.Fatal("a code was redeemed for the wrong browser")
	}

	wantPage(t, e.callback(c, url.Values{"state": {state}, "code": {"c0de"}}), http.StatusOK, "Signed in as alice")
	if got := e.oidc.exchanges; len(got) != 1 || got[0] != (oidcCall{"c0de", e.oidc.verifier, e.oidc.nonce}) {
		t.Errorf("Exchange calls %+v, want code c0de with the attempt's verifier %q and nonce %q", got, e.oidc.verifier, e.oidc.nonce)
	}
	a := e.poll(dc.DeviceCode)
	if a.Status != http.StatusOK || a.Session.Method != "oidc" || !a.Session.MFA {
		t.Fatalf("poll = %d %s %+v", a.Status, a.Error, a.Session)
	}
	if s := sessionOf(t, e, a.AccessToken); s.Source != "oidc" || !s.MFA {
		t.Errorf("stored session %+v", s)
	}

	wantPage(t, e.callback(c, url.Values{"state": {state}, "code": {"c0de"}}), http.StatusForbidden, "Sign-in refused")
	if len(e.oidc.exchanges) != 1 {
		t.Error("a replayed callback redeemed the code again")
	}
	e.wantRefusals("browser_mismatch", "browser_mismatch", "unknown_request")
}

func TestOIDCProviderError(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	c, loc := e.start(dc.UserCode, "oidc")
	q := url.Values{"state": {loc.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"User cancelled <the> login"}}
	rec := e.callback(c, q)
	wantPage(t, rec, http.StatusForbidden, "access_denied", "User cancelled <the> login")
	if strings.Contains(rec.Body.String(), "<the>") {
		t.Error("the provider's text is not escaped")
	}
	if len(e.oidc.exchanges) != 0 {
		t.Error("Exchange called after the provider refused")
	}
	a := e.wantPollError(dc.DeviceCode, "access_denied")
	if !strings.Contains(a.Description, "access_denied") {
		t.Errorf("access_denied description %q does not carry the provider's error", a.Description)
	}
	if d := detail(t, e.wantRefusals("provider_error")[0]); d["method"] != "oidc" {
		t.Errorf("refusal detail %v", d)
	}
}

// TestAttemptForOneMethodOnly checks that an attempt started for SAML
// cannot be finished through the OIDC callback.
func TestAttemptForOneMethodOnly(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	c, loc := e.start(dc.UserCode, "saml")
	wantPage(t, e.callback(c, url.Values{"state": {loc.Query().Get("RelayState")}, "code": {"c0de"}}), http.StatusForbidden, "Sign-in refused")
	if len(e.oidc.exchanges) != 0 {
		t.Error("a SAML attempt redeemed an OIDC code")
	}
	e.wantRefusals("unknown_request")
	e.wantPollError(dc.DeviceCode, "authorization_pending")
}

func TestSlowBrowserSignIn(t *testing.T) {
	t.Run("attempt too old", func(t *testing.T) {
		e := aliceEnv(t, nil)
		dc := e.deviceCode()
		c, _ := e.start(dc.UserCode, "oidc")
		e.tick(10*time.Minute + time.Second)
		wantPage(t, e.callback(c, url.Values{"state": {c.Value}, "code": {"c0de"}}), http.StatusForbidden, "took too long")
		e.wantRefusals("unknown_request")
	})
	t.Run("device code expired meanwhile", func(t *testing.T) {
		e := aliceEnv(t, nil)
		dc := e.deviceCode()
		e.tick(9 * time.Minute)
		c, _ := e.start(dc.UserCode, "oidc")
		e.tick(2 * time.Minute)
		wantPage(t, e.callback(c, url.Values{"state": {c.Value}, "code": {"c0de"}}), http.StatusForbidden, "expired while you were signing in")
		e.wantRefusals("expired")
		e.wantPollError(dc.DeviceCode, "expired_token")
		if len(e.events("signin")) != 0 {
			t.Error("a session was made for an expired device code")
		}
	})
}

// TestOneAttemptPerFlow checks that starting again replaces the flow's
// earlier attempt, so that posting /device/start in a loop with one valid
// code cannot grow the server's memory without bound.
func TestOneAttemptPerFlow(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	other := e.deviceCode()
	e.start(other.UserCode, "saml")
	first, _ := e.start(dc.UserCode, "oidc")
	for range 100 {
		e.start(dc.UserCode, "saml")
	}
	last, loc := e.start(dc.UserCode, "saml")
	if n := sso.PendingAttempts(e.svc); n != 2 {
		t.Errorf("%d pending attempts for two flows, want 2", n)
	}
	wantPage(t, e.callback(first, url.Values{"state": {first.Value}, "code": {"c0de"}}), http.StatusForbidden, "Sign-in refused")
	e.wantRefusals("unknown_request")
	wantPage(t, e.acs(last, loc.Query().Get("RelayState"), "response"), http.StatusOK, "Signed in as alice")
}

// TestUserCodeGuessing checks RFC 8628 §5.1's protection: a source that
// enters many unknown user codes is made to wait, even for a right one,
// while other sources are not.
func TestUserCodeGuessing(t *testing.T) {
	e := aliceEnv(t, nil)
	dc := e.deviceCode()
	for i := range 20 {
		wantPage(t, e.devicePage(fmt.Sprintf("ZZZZ-%04d", i)), http.StatusOK, "unknown or has expired")
	}
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "Too many unknown codes", "wait 30s")
	rec := e.serve(startRequest(dc.UserCode, "saml"))
	wantPage(t, rec, http.StatusTooManyRequests, "Too many unknown codes")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	other := startRequest(dc.UserCode, "saml")
	other.RemoteAddr = "192.0.2.99:4444"
	if rec := e.serve(other); rec.Code != http.StatusSeeOther {
		t.Errorf("another source was limited too: %d", rec.Code)
	}
	// One more try per interval: the right code gets through again.
	e.tick(30 * time.Second)
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, dc.UserCode)
}

// otherFirst changes s's first character, whatever it is.
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
