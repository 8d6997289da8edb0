// Package oidc signs people in through an OpenID Connect provider (Azure
// AD, Okta, Google, Keycloak and the like) with the authorization code
// flow. A Provider is package sso's OIDCConnector: it builds the
// authorization request and turns the provider's answer into an
// sso.Identity through the shared attribute mapping.
//
// Every sign-in carries three one-time values, because each stops a
// different attack. state ties the callback to the browser that started
// the sign-in, so nobody can finish a sign-in of theirs in someone else's
// browser. The nonce ties the ID token to this request, so a token from
// another sign-in cannot be replayed into it. PKCE (S256) ties the code to
// keygate, so a code that leaks on its way back through the browser is
// useless to whoever holds it, even for a public client with no secret.
// Package sso makes and keeps all three and checks state itself; this
// package puts them in the request, sends the PKCE verifier with the code,
// and checks the nonce in the ID token.
//
// Discovery, fetching and rotating the provider's keys, and checking the ID
// token's signature, issuer and audience are go-oidc's. The validity
// window is checked here, against an injectable clock and the configured
// clock skew, so that both directions of skew are allowed alike. Claims
// the mapping names but the ID token leaves out are read from the UserInfo
// endpoint: many providers put only the subject in an ID token issued
// together with an access token.
package oidc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/sso"
)

// Config configures a Provider.
type Config struct {
	// Issuer is the provider's issuer URL, exactly as its discovery
	// document states it.
	Issuer       string
	ClientID     string
	ClientSecret string // empty for a public client, which relies on PKCE alone
	// RedirectURL is keygate's callback, registered at the provider.
	RedirectURL string
	// Scopes are asked for besides openid, which is always asked for.
	Scopes  []string
	Mapping sso.Mapping
	// HTTPClient, if set, makes every request to the provider: discovery,
	// keys, token and UserInfo.
	HTTPClient *http.Client
	// Now is the clock for the ID token's validity window; default
	// time.Now.
	Now func() time.Time
	// ClockSkew is how far the provider's clock may be from keygate's.
	ClockSkew time.Duration
}

// Provider is an OpenID Connect provider as keygate's relying party sees
// it.
type Provider struct {
	cfg      Config
	provider *oidc.Provider
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

var _ sso.OIDCConnector = (*Provider)(nil)

// New reads the provider's discovery document and makes a Provider.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("OpenID Connect: the issuer URL is required")
	case cfg.ClientID == "":
		return nil, errors.New("OpenID Connect: the client ID is required: the application (client) ID registered at the provider")
	case cfg.RedirectURL == "":
		return nil, errors.New("OpenID Connect: the redirect URL is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx = clientContext(ctx, cfg.HTTPClient)
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, discoveryError(cfg.Issuer, err)
	}
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range cfg.Scopes {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return &Provider{
		cfg:      cfg,
		provider: provider,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     provider.Endpoint(),
			RedirectURL:  cfg.RedirectURL,
			Scopes:       scopes,
		},
		// The validity window is checked in Exchange, with the skew
		// applied both ways; go-oidc's own check allows none on expiry.
		verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, SkipExpiryCheck: true}),
	}, nil
}

// discoveryError says which URL failed and what usually fixes it.
func discoveryError(issuer string, err error) error {
	var mismatch *oidc.IssuerMismatchError
	if errors.As(err, &mismatch) {
		return fmt.Errorf("OpenID Connect discovery: the provider at %s calls itself %q: set the issuer to exactly that, down to a trailing slash: %w", issuer, mismatch.Discovered, err)
	}
	// The hint comes before err, which may end in a multi-line body.
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	return fmt.Errorf("OpenID Connect discovery failed at %s; check that the issuer URL is the one the provider publishes (Azure AD: https://login.microsoftonline.com/TENANT/v2.0; Okta: https://ORG.okta.com) and that keygate can reach it: %w", wellKnown, err)
}

func clientContext(ctx context.Context, c *http.Client) context.Context {
	if c == nil {
		return ctx
	}
	return oidc.ClientContext(ctx, c)
}

// AuthCodeURL returns the authorization request to send the browser to.
func (p *Provider) AuthCodeURL(state, nonce, verifier string) string {
	return p.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
}

// Exchange redeems code with the PKCE verifier, checks the ID token that
// comes back, and maps its claims to an Identity. Every failure is an
// *sso.Refusal.
func (p *Provider) Exchange(ctx context.Context, code, verifier, nonce string) (sso.Identity, error) {
	ctx = clientContext(ctx, p.cfg.HTTPClient)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return sso.Identity{}, sso.Refuse("provider_error", fmt.Errorf("redeem the authorization code: %w", err),
			"the identity provider did not accept this sign-in's code (it may have expired or been used already): start the sign-in again")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return sso.Identity{}, sso.Refuse("no_id_token", nil,
			"the identity provider answered without an ID token: the application registered there must be an OpenID Connect application that allows the openid scope")
	}
	idToken, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return sso.Identity{}, sso.Refuse("id_token_invalid", fmt.Errorf("verify ID token: %w", err),
			"the identity provider's ID token failed verification (signature, issuer or audience); the keygate server log has details")
	}
	claims, err := readClaims(idToken.Claims)
	if err != nil {
		return sso.Identity{}, sso.Refuse("id_token_invalid", fmt.Errorf("read ID token claims: %w", err), "the identity provider's ID token could not be read")
	}
	if err := p.checkToken(idToken, claims); err != nil {
		return sso.Identity{}, err
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(idToken.Nonce), []byte(nonce)) != 1 {
		return sso.Identity{}, sso.Refuse("nonce_mismatch", nil,
			"the identity provider's answer does not belong to this sign-in (its nonce differs): start the sign-in again")
	}
	if p.lacksMapped(claims) && p.provider.UserInfoEndpoint() != "" {
		if err := p.addUserInfo(ctx, tok, idToken.Subject, claims); err != nil {
			return sso.Identity{}, err
		}
	}
	return p.cfg.Mapping.Identity("oidc", idToken.Subject, claims)
}

// checkToken checks what go-oidc leaves to the caller: the validity
// window, within the clock skew either way, and the authorized party.
func (p *Provider) checkToken(t *oidc.IDToken, claims sso.Claims) error {
	now, skew := p.cfg.Now(), p.cfg.ClockSkew
	clocks := "check that the clocks of keygate and the identity provider are right, then sign in again"
	if t.Expiry.IsZero() || now.After(t.Expiry.Add(skew)) {
		return sso.Refuse("id_token_invalid", fmt.Errorf("ID token expired at %s, now %s, skew %s", t.Expiry, now, skew),
			"the identity provider's ID token has expired: %s", clocks)
	}
	if t.IssuedAt.After(now.Add(skew)) {
		return sso.Refuse("id_token_invalid", fmt.Errorf("ID token issued at %s, now %s, skew %s", t.IssuedAt, now, skew),
			"the identity provider's ID token was issued in the future: %s", clocks)
	}
	if nbf := claims["nbf"]; len(nbf) == 1 {
		sec, err := strconv.ParseFloat(nbf[0], 64)
		if err != nil {
			return sso.Refuse("id_token_invalid", fmt.Errorf("ID token nbf %q: %w", nbf[0], err), "the identity provider's ID token could not be read")
		}
		if notBefore := time.Unix(int64(sec), 0); now.Add(skew).Before(notBefore) {
			return sso.Refuse("id_token_invalid", fmt.Errorf("ID token not valid before %s, now %s, skew %s", notBefore, now, skew),
				"the identity provider's ID token is not valid yet: %s", clocks)
		}
	}
	// OpenID Connect Core §3.1.3.7: a token issued to another party
	// that merely lists keygate among its audiences is not keygate's.
	if azp := claims["azp"]; len(azp) > 0 && (len(azp) != 1 || azp[0] != p.cfg.ClientID) {
		return sso.Refuse("id_token_invalid", fmt.Errorf("ID token azp %q, client ID %q", azp, p.cfg.ClientID),
			"the identity provider's ID token was issued to another application")
	}
	return nil
}

// lacksMapped reports whether the mapping names a claim that claims lack.
func (p *Provider) lacksMapped(claims sso.Claims) bool {
	m := p.cfg.Mapping
	names := []string{m.UserName, m.Email, m.Groups}
	for _, name := range m.Tags {
		names = append(names, name)
	}
	for _, name := range names {
		if name != "" && !has(claims, name) {
			return true
		}
	}
	return false
}

// has reports whether claims hold name, matched the way sso.Mapping
// matches it: exactly or else ignoring case.
func has(claims sso.Claims, name string) bool {
	if _, ok := claims[name]; ok {
		return true
	}
	for k := range claims {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// addUserInfo adds to claims what the UserInfo endpoint says and the ID
// token does not. The ID token wins where both speak: it is signed.
func (p *Provider) addUserInfo(ctx context.Context, tok *oauth2.Token, subject string, claims sso.Claims) error {
	info, err := p.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return sso.Refuse("provider_error", fmt.Errorf("UserInfo: %w", err),
			"keygate could not read your profile from the identity provider's UserInfo endpoint; the keygate server log has details")
	}
	// OpenID Connect Core §5.3.2: an answer about someone else must not
	// be used.
	if info.Subject != subject {
		return sso.Refuse("userinfo_mismatch", fmt.Errorf("UserInfo subject %q, ID token subject %q", info.Subject, subject),
			"the identity provider's UserInfo endpoint described someone other than the person who signed in")
	}
	extra, err := readClaims(info.Claims)
	if err != nil {
		return sso.Refuse("provider_error", fmt.Errorf("UserInfo claims: %w", err), "the identity provider's UserInfo answer could not be read")
	}
	for name, values := range extra {
		if !has(claims, name) {
			claims[name] = values
		}
	}
	return nil
}

// readClaims flattens the claims that decode (an ID token's or a UserInfo
// answer's Claims method) unmarshals.
func readClaims(decode func(v any) error) (sso.Claims, error) {
	var raw json.RawMessage
	if err := decode(&raw); err != nil {
		return nil, err
	}
	return flatten(raw)
}

// flatten reads a JSON object of claims into sso.Claims, which hold
// strings: strings as they are, numbers and booleans formatted, arrays as
// their string, number and boolean elements. Nested objects (address,
// say) have no place in a flat attribute mapping and are left out, as is
// null.
func flatten(raw []byte) (sso.Claims, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		return nil, err
	}
	claims := sso.Claims{}
	for name, v := range obj {
		if list, ok := v.([]any); ok {
			// An empty list is kept: it says there are none (no
			// groups), which is not the same as not saying.
			values := []string{}
			for _, e := range list {
				if s, ok := scalar(e); ok {
					values = append(values, s)
				}
			}
			claims[name] = values
		} else if s, ok := scalar(v); ok {
			claims[name] = []string{s}
		}
	}
	return claims, nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}
