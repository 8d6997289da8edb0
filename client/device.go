package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Sign-in uses the OAuth 2.0 Device Authorization Grant (RFC 8628) that
// keygate serves: the CLI gets a code, the person approves it in a browser
// through the company identity provider, and the CLI's poll then returns
// a sign-in session. The standard client in x/oauth2 does the protocol.

// Device endpoints, as the server serves them.
const (
	deviceCodePath  = "/v1/device/code"
	deviceTokenPath = "/v1/device/token"
)

// cliClientID names the CLI to the device endpoints.
const cliClientID = "keygate-cli"

// ErrNoSignIn means the server has no sign-in set up: its config has no
// sso section, so people get sessions from an administrator instead.
var ErrNoSignIn = errors.New("this keygate server has no sign-in set up (sso in its config)")

// DeviceAuth is a started sign-in: the code to show and where to approve it.
type DeviceAuth = oauth2.DeviceAuthResponse

// oauth is the device grant's client config, and ctx carrying the HTTP
// client that trusts keygate's CA.
func (c *Client) oauth(ctx context.Context) (*oauth2.Config, context.Context) {
	base := strings.TrimSuffix(c.base.String(), "/")
	cfg := &oauth2.Config{ClientID: cliClientID, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: base + deviceCodePath, TokenURL: base + deviceTokenPath, AuthStyle: oauth2.AuthStyleInParams,
	}}
	return cfg, context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// StartSignIn asks for a device code; clientName is shown on the approval
// page so the person can tell which machine asked.
func (c *Client) StartSignIn(ctx context.Context, clientName string) (*DeviceAuth, error) {
	cfg, octx := c.oauth(ctx)
	da, err := cfg.DeviceAuth(octx, oauth2.SetAuthURLParam("client_name", clientName))
	if err != nil {
		return nil, c.signInError("start sign-in", err)
	}
	return da, nil
}

// SignedIn is the outcome of an approved sign-in.
type SignedIn struct {
	Credential string
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Expires    time.Time `json:"expires_at"`
	MFA        bool      `json:"mfa"`
	Method     string    `json:"method"`
}

// FinishSignIn polls until the person approves or refuses the code in the
// browser, or it expires.
func (c *Client) FinishSignIn(ctx context.Context, da *DeviceAuth) (SignedIn, error) {
	cfg, octx := c.oauth(ctx)
	tok, err := cfg.DeviceAccessToken(octx, da)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return SignedIn{}, errors.New("the code expired before the browser sign-in finished: run keygate login again")
	}
	if err != nil {
		return SignedIn{}, c.signInError("sign in", err)
	}
	var out SignedIn
	raw, err := json.Marshal(tok.Extra("session"))
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil || out.User == "" {
		return SignedIn{}, fmt.Errorf("sign in: %s answered without describing the session", c.base.Host)
	}
	out.Credential = tok.AccessToken
	return out, nil
}

// signInError turns the device endpoints' OAuth errors into what to do.
func (c *Client) signInError(what string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var reach *ReachError
		if rerr := c.reachError(err); errors.As(rerr, &reach) {
			return rerr
		}
		return fmt.Errorf("%s at %s: %w", what, c.base.Host, err)
	}
	switch re.ErrorCode {
	case "access_denied":
		return fmt.Errorf("sign-in refused: %s", re.ErrorDescription)
	case "unsupported_grant_type":
		if re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			return ErrNoSignIn
		}
	case "":
		return fmt.Errorf("%s at %s: %s (is this a keygate server?)", what, c.base.Host, re.Response.Status)
	}
	if re.ErrorDescription != "" {
		return fmt.Errorf("%s: %s", what, re.ErrorDescription)
	}
	return fmt.Errorf("%s: %s", what, re.ErrorCode)
}
