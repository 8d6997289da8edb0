package config

import (
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// State says where keygate keeps its state. Without PostgresURLEnv it is a
// SQLite database in data_dir, for one server; with it, several servers
// share one PostgreSQL database, and the secrets they must agree on (token
// signing keys, the CA, the SAML key, the admin credential) live there too,
// encrypted with the key SecretsKeyEnv names.
type State struct {
	// PostgresURLEnv names the environment variable that holds the state
	// database's libpq URL. The URL carries a password, so it is never in
	// the config itself.
	PostgresURLEnv string `yaml:"postgres_url_env"`
	// Node is this server's name in the audit chain and the logs: each
	// node keeps a chain of its own. Default: the host name.
	Node string `yaml:"node"`
	// SecretsKeyEnv names the environment variable holding the key that
	// encrypts the shared secrets: 32 random bytes in base64, the same on
	// every node. Required with PostgresURLEnv.
	SecretsKeyEnv string `yaml:"secrets_key_env"`
}

// Shared reports whether the state lives in a PostgreSQL database that
// several servers may share.
func (s State) Shared() bool { return s.PostgresURLEnv != "" }

// SecretsKeySize is the size of the key that encrypts shared secrets.
const SecretsKeySize = 32

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	nodeRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// NodeName is this server's node name: state.node, or the host name folded
// to what a node name may hold.
func (s State) NodeName() (string, error) {
	if s.Node != "" {
		return s.Node, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("state.node is unset and the host name cannot be read (%w): set state.node", err)
	}
	host = strings.ToLower(host)
	if !nodeRE.MatchString(host) {
		return "", fmt.Errorf("state.node is unset and the host name %q is not a usable node name: set state.node to lower-case letters, digits, '.', '_' or '-'", host)
	}
	return host, nil
}

// PostgresURL reads the state database's URL from the environment.
func (s State) PostgresURL() (string, error) {
	url := os.Getenv(s.PostgresURLEnv)
	if url == "" {
		return "", fmt.Errorf("state.postgres_url_env names %s, which is empty: set it to the state database's URL, such as postgres://keygate:PASSWORD@db.internal/keygate?sslmode=verify-full", s.PostgresURLEnv)
	}
	return url, nil
}

// SecretsKey reads and decodes the secrets key from the environment.
func (s State) SecretsKey() ([]byte, error) {
	raw := strings.TrimSpace(os.Getenv(s.SecretsKeyEnv))
	if raw == "" {
		return nil, fmt.Errorf("state.secrets_key_env names %s, which is empty: set it to the secrets key, the same on every server (make one with: openssl rand -base64 32)", s.SecretsKeyEnv)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) != SecretsKeySize {
		return nil, fmt.Errorf("%s does not hold a secrets key: it must be %d random bytes in base64 (make one with: openssl rand -base64 32)", s.SecretsKeyEnv, SecretsKeySize)
	}
	return key, nil
}

func (c *Config) validateState() []error {
	var errs []error
	s := c.State
	if s.PostgresURLEnv != "" && !envNameRE.MatchString(s.PostgresURLEnv) {
		errs = append(errs, c.errorAt("state.postgres_url_env", "state.postgres_url_env %q is not an environment variable name: name the variable, such as KEYGATE_STATE_URL, not the URL", s.PostgresURLEnv))
	}
	if s.SecretsKeyEnv != "" && !envNameRE.MatchString(s.SecretsKeyEnv) {
		errs = append(errs, c.errorAt("state.secrets_key_env", "state.secrets_key_env %q is not an environment variable name: name the variable, such as KEYGATE_SECRETS_KEY, not the key", s.SecretsKeyEnv))
	}
	if s.Shared() && s.SecretsKeyEnv == "" {
		errs = append(errs, c.errorAt("state.postgres_url_env", "state.postgres_url_env is set but state.secrets_key_env is not: servers sharing a state database keep their keys in it, encrypted; set secrets_key_env: KEYGATE_SECRETS_KEY and put the same 32 random bytes in base64 there on every server"))
	}
	if !s.Shared() && s.SecretsKeyEnv != "" {
		errs = append(errs, c.errorAt("state.secrets_key_env", "state.secrets_key_env is set but state.postgres_url_env is not: the key encrypts secrets in a shared state database; without one, remove it"))
	}
	if s.Node != "" && !nodeRE.MatchString(s.Node) {
		errs = append(errs, c.errorAt("state.node", "state.node %q: use up to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", s.Node))
	}
	return errs
}
