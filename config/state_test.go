package config

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

func TestState(t *testing.T) {
	if c := mustParse(t, minimal); c.State.Shared() {
		t.Fatalf("state without the section: %+v", c.State)
	}
	c := mustParse(t, minimal+"state:\n  postgres_url_env: KG_TEST_STATE_URL\n  secrets_key_env: KG_TEST_SECRETS_KEY\n  node: node-a.eu1\n")
	s := c.State
	if !s.Shared() {
		t.Fatal("postgres_url_env set, but the state is not shared")
	}
	if n, err := s.NodeName(); err != nil || n != "node-a.eu1" {
		t.Errorf("NodeName = %q, %v", n, err)
	}
	t.Setenv("KG_TEST_STATE_URL", "")
	if _, err := s.PostgresURL(); err == nil || !strings.Contains(err.Error(), "KG_TEST_STATE_URL, which is empty") {
		t.Errorf("PostgresURL with the variable empty: %v", err)
	}
	t.Setenv("KG_TEST_STATE_URL", "postgres://k@db/k")
	if u, err := s.PostgresURL(); err != nil || u != "postgres://k@db/k" {
		t.Errorf("PostgresURL = %q, %v", u, err)
	}
	for value, want := range map[string]string{
		"":                         "KG_TEST_SECRETS_KEY, which is empty",
		"not base64!":              "KG_TEST_SECRETS_KEY does not hold a secrets key: it must be 32 random bytes in base64",
		base64Of(make([]byte, 16)): "KG_TEST_SECRETS_KEY does not hold a secrets key",
	} {
		t.Setenv("KG_TEST_SECRETS_KEY", value)
		_, err := s.SecretsKey()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SecretsKey with %q: %v, want %q", value, err, want)
		} else if value != "" && strings.Contains(err.Error(), value) {
			t.Errorf("SecretsKey's error quotes the key: %v", err)
		}
	}
	key := make([]byte, SecretsKeySize)
	key[0] = 7
	t.Setenv("KG_TEST_SECRETS_KEY", base64Of(key)+"\n")
	if got, err := s.SecretsKey(); err != nil || got[0] != 7 || len(got) != SecretsKeySize {
		t.Errorf("SecretsKey = %x, %v", got, err)
	}
	// Without state.node, the host name.
	host, _ := os.Hostname()
	if n, err := (State{PostgresURLEnv: "X"}).NodeName(); err == nil && n != strings.ToLower(host) {
		t.Errorf("NodeName without state.node = %q, host %q", n, host)
	}
}

func base64Of(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestStateRefused(t *testing.T) {
	for in, want := range map[string]string{
		"postgres_url_env: postgres://k@db/k\n  secrets_key_env: K": `:3: state.postgres_url_env "postgres://k@db/k" is not an environment variable name`,
		"postgres_url_env: KEYGATE_STATE_URL":                       ":3: state.postgres_url_env is set but state.secrets_key_env is not",
		"secrets_key_env: KEYGATE_SECRETS_KEY":                      ":3: state.secrets_key_env is set but state.postgres_url_env is not",
		"node: Node A":                                              `:3: state.node "Node A": use up to 63 lower-case letters`,
		"postgres_url: x":                                           `:3: unknown key "postgres_url"`,
	} {
		msg := parseErr(t, minimal+"state:\n  "+in+"\n")
		if !strings.Contains(msg, want) {
			t.Errorf("state %s: %q, want it to contain %q", in, msg, want)
		}
	}
}
