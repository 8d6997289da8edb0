package sso_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/sso"
)

func TestPollWhilePending(t *testing.T) {
	e := newEnv(t, nil)
	dc := e.deviceCode()
	e.wantPollError(dc.DeviceCode, "authorization_pending")
	e.tick(sso.PollInterval)
	e.wantPollError(dc.DeviceCode, "authorization_pending")

	// RFC 8628 §3.5: polling faster than the interval is answered with
	// slow_down. Half the interval is the threshold, so that a client's
	// timer jitter is not punished.
	e.tick(sso.PollInterval/2 - time.Millisecond)
	e.wantPollError(dc.DeviceCode, "slow_down")
	// A poll that was told to slow down counts as the last poll: a client
	// that keeps hammering keeps hearing it.
	e.tick(sso.PollInterval/2 - time.Millisecond)
	e.wantPollError(dc.DeviceCode, "slow_down")
	e.tick(sso.PollInterval / 2)
	e.wantPollError(dc.DeviceCode, "authorization_pending")
}

func TestPollRefusesBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	dc := e.deviceCode()
	for _, grant := range []string{"", "authorization_code", "refresh_token", sso.GrantTypeDeviceCode + "x"} {
		a := e.pollWith(url.Values{"grant_type": {grant}, "device_code": {dc.DeviceCode}})
		if a.Status != http.StatusBadRequest || a.Error != "unsupported_grant_type" {
			t.Errorf("grant_type %q: %d %q, want 400 unsupported_grant_type", grant, a.Status, a.Error)
		}
	}
	for _, code := range []string{"", "x", dc.DeviceCode[:42], strings.ToUpper(dc.DeviceCode), dc.UserCode} {
		e.tick(sso.PollInterval)
		e.wantPollError(code, "invalid_grant")
	}
	// None of that touched the real flow.
	e.tick(sso.PollInterval)
	e.wantPollError(dc.DeviceCode, "authorization_pending")

	if rec := e.serve(formRequest(sso.PathDeviceToken, nil)); rec.Code != http.StatusBadRequest {
		t.Errorf("empty poll: %d, want 400", rec.Code)
	}
}

func TestDeviceCodeExpires(t *testing.T) {
	e := newEnv(t, nil)
	dc := e.deviceCode()
	e.tick(sso.DeviceCodeTTL)
	e.wantPollError(dc.DeviceCode, "authorization_pending")
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, `id="user-code">`+dc.UserCode)

	e.tick(time.Second)
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "That code is unknown or has expired.")
	wantPage(t, e.serve(startRequest(dc.UserCode, "saml")), http.StatusBadRequest, "Unknown or expired code")
	a := e.wantPollError(dc.DeviceCode, "expired_token")
	if !strings.Contains(a.Description, "keygate login again") {
		t.Errorf("expired_token description %q does not say what to do", a.Description)
	}
	e.tick(sso.PollInterval)
	e.wantPollError(dc.DeviceCode, "invalid_grant")
}
