package config

import (
	"fmt"
	"net/url"
	"slices"
	"time"
)

// SSO configures how people sign in: through a SAML 2.0 identity provider,
// an OpenID Connect provider, or both.
type SSO struct {
	// SessionDuration is how long a sign-in session lasts; default 8h.
	SessionDuration Duration `yaml:"session_duration"`
	// MatchBy is the field of a provisioned user that the signed-in identity
	// must match: userName (default), email or externalId.
	MatchBy string `yaml:"match_by"`
	// JITUsers creates a person on first sign-in instead of refusing one
	// that SCIM has not provisioned.
	JITUsers bool `yaml:"jit_users"`
	// ClockSkew is how far the identity provider's clock may be from
	// keygate's when checking validity windows; default 2m, at most 10m.
	ClockSkew Duration `yaml:"clock_skew"`
	SAML      *SAML    `yaml:"saml"`
	OIDC      *OIDC    `yaml:"oidc"`
}

// SAML configures the SAML 2.0 service provider.
type SAML struct {
	// IdPMetadataURL is where the identity provider publishes its metadata;
	// it is fetched again every MetadataRefresh, so certificate rotations
	// need no restart.
	IdPMetadataURL string `yaml:"idp_metadata_url"`
	// IdPMetadataFile is a metadata file, read again on the same schedule.
	IdPMetadataFile string `yaml:"idp_metadata_file"`
	// MetadataRefresh is how often the metadata is read again; default 1h.
	MetadataRefresh Duration `yaml:"metadata_refresh"`
	// EntityID is keygate's SAML entity ID; default the metadata URL,
	// https://HOST:PORT/saml/metadata, under public_url when it is set.
	EntityID string `yaml:"entity_id"`
	// CAFile is a CA bundle to trust, besides the system's roots, for the
	// metadata URL: for an identity provider behind a private CA, such as
	// a self-hosted Keycloak or ADFS.
	CAFile string `yaml:"ca_file"`
	// IdPInitiated accepts responses the identity provider sends unasked
	// (a tile in the Okta or Azure portal). Off by default: such responses
	// cannot be tied to a request keygate made.
	IdPInitiated bool `yaml:"idp_initiated"`
	// Attributes maps assertion attributes to the person.
	Attributes Attributes `yaml:"attributes"`
}

// OIDC configures the OpenID Connect relying party.
type OIDC struct {
	// Issuer is the provider's issuer URL; discovery reads
	// ISSUER/.well-known/openid-configuration.
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv names the environment variable holding the client
	// secret; empty for a public client (PKCE only).
	ClientSecretEnv string `yaml:"client_secret_env"`
	// CAFile is a CA bundle to trust, besides the system's roots, for the
	// provider's HTTPS: discovery, keys, tokens and UserInfo.
	CAFile string `yaml:"ca_file"`
	// Scopes asked for besides openid; default profile and email.
	Scopes []string `yaml:"scopes"`
	// Attributes maps ID-token claims to the person.
	Attributes Attributes `yaml:"attributes"`
}

// Attributes names the assertion attributes or claims that carry a
// person's identity. Tags maps a principal tag key to the attribute that
// carries its value; attributes named
// https://aws.amazon.com/SAML/Attributes/PrincipalTag:KEY become tag KEY
// without being listed.
type Attributes struct {
	UserName string            `yaml:"username"`
	Email    string            `yaml:"email"`
	Groups   string            `yaml:"groups"`
	Tags     map[string]string `yaml:"tags"`
}

// Defaults and bounds of the sso section.
const (
	DefaultSessionDuration = 8 * time.Hour
	MaxSessionDuration     = 7 * 24 * time.Hour
	DefaultClockSkew       = 2 * time.Minute
	MaxClockSkew           = 10 * time.Minute
	DefaultMetadataRefresh = time.Hour
)

// MatchBy values.
const (
	MatchUserName   = "userName"
	MatchEmail      = "email"
	MatchExternalID = "externalId"
)

// Enabled reports whether any sign-in method is configured.
func (s SSO) Enabled() bool { return s.SAML != nil || s.OIDC != nil }

func (s *SSO) applyDefaults(apiURL string) {
	if s.SessionDuration == 0 {
		s.SessionDuration = Duration(DefaultSessionDuration)
	}
	if s.MatchBy == "" {
		s.MatchBy = MatchUserName
	}
	if s.ClockSkew == 0 {
		s.ClockSkew = Duration(DefaultClockSkew)
	}
	if s.SAML != nil {
		if s.SAML.MetadataRefresh == 0 {
			s.SAML.MetadataRefresh = Duration(DefaultMetadataRefresh)
		}
		if s.SAML.EntityID == "" {
			s.SAML.EntityID = apiURL + "/saml/metadata"
		}
	}
	if s.OIDC != nil {
		if len(s.OIDC.Scopes) == 0 {
			s.OIDC.Scopes = []string{"profile", "email"}
		}
		if s.OIDC.Attributes.UserName == "" {
			s.OIDC.Attributes.UserName = "preferred_username"
		}
		if s.OIDC.Attributes.Email == "" {
			s.OIDC.Attributes.Email = "email"
		}
	}
}

func (s *SSO) validate(c *Config) []error {
	var errs []error
	add := func(p, format string, args ...any) { errs = append(errs, c.errorAt(p, format, args...)) }
	if d := time.Duration(s.SessionDuration); d < time.Minute || d > MaxSessionDuration {
		add("sso.session_duration", "sso.session_duration %s must be between 1m and %s", d, MaxSessionDuration)
	}
	if !slices.Contains([]string{MatchUserName, MatchEmail, MatchExternalID}, s.MatchBy) {
		add("sso.match_by", "sso.match_by %q: use userName, email or externalId", s.MatchBy)
	}
	if d := time.Duration(s.ClockSkew); d < 0 || d > MaxClockSkew {
		add("sso.clock_skew", "sso.clock_skew %s must be between 0 and %s", d, MaxClockSkew)
	}
	if m := s.SAML; m != nil {
		switch {
		case m.IdPMetadataURL == "" && m.IdPMetadataFile == "":
			add("sso.saml", "sso.saml needs idp_metadata_url or idp_metadata_file: the identity provider's SAML metadata (Azure AD: App Federation Metadata Url; Okta: Metadata URL)")
		case m.IdPMetadataURL != "" && m.IdPMetadataFile != "":
			add("sso.saml", "sso.saml: set idp_metadata_url or idp_metadata_file, not both")
		case m.IdPMetadataURL != "":
			if err := checkURL(m.IdPMetadataURL); err != nil {
				add("sso.saml.idp_metadata_url", "sso.saml.idp_metadata_url: %v", err)
			}
		}
		if d := time.Duration(m.MetadataRefresh); d < time.Second {
			add("sso.saml.metadata_refresh", "sso.saml.metadata_refresh %s is under 1s", d)
		}
	}
	if o := s.OIDC; o != nil {
		if err := checkURL(o.Issuer); err != nil {
			add("sso.oidc.issuer", "sso.oidc.issuer: %v", err)
		}
		if o.ClientID == "" {
			add("sso.oidc", "sso.oidc.client_id is required: the application (client) ID registered at the provider")
		}
	}
	return errs
}

// checkURL accepts absolute http and https URLs.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}
