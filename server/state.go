package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/sso/saml"
	"github.com/keygate/keygate/store/postgres"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/token"
)

// keyPropagation is how long a token signing key one server adds only
// verifies, before it signs: the others pull it well within that time
// (secretsPullEvery), so none refuses a token signed with it.
const (
	keyPropagation   = 2 * time.Minute
	secretsPullEvery = 30 * time.Second
)

// openState opens the state: a PostgreSQL database that several servers
// share when state.postgres_url_env is set, otherwise SQLite in data_dir.
func (s *Server) openState(ctx context.Context, cfg *config.Config, dataDir string) error {
	if !cfg.State.Shared() {
		st, err := sqlite.Open(ctx, cfg.DataPath(StoreFile), time.Now)
		if err != nil {
			return err
		}
		s.store = st
		return nil
	}
	node, err := cfg.State.NodeName()
	if err != nil {
		return err
	}
	url, err := cfg.State.PostgresURL()
	if err != nil {
		return err
	}
	key, err := cfg.State.SecretsKey()
	if err != nil {
		return err
	}
	st, err := postgres.Open(ctx, url)
	if err != nil {
		return fmt.Errorf("state database (%s): %w", cfg.State.PostgresURLEnv, err)
	}
	s.store, s.node = st, node
	if s.secrets, err = newSecretMirror(st, key, cfg.State.SecretsKeyEnv, dataDir, s.log); err != nil {
		return err
	}
	if err := s.secrets.checkKey(ctx); err != nil {
		return err
	}
	s.log.Info("state in a shared PostgreSQL database", "node", node, "url_env", cfg.State.PostgresURLEnv)
	return nil
}

// openSecrets loads the CA and the gateway certificate, the token signing
// keys, the admin credential and the SAML key from data_dir, creating the
// ones missing. On a shared state database it runs under the secrets
// lock, after the shared files were pulled into data_dir.
func (s *Server) openSecrets(cfg *config.Config, dataDir string, now time.Time) ([sha256.Size]byte, error) {
	var err error
	if s.ca, err = pki.Open(dataDir, cfg.PublicHostnames, now); err != nil {
		return [sha256.Size]byte{}, err
	}
	if s.ca.Renewed() {
		s.log.Info("issued gateway certificate", "hostnames", cfg.PublicHostnames)
	}
	if left := s.ca.CAExpires().Sub(now); left < 365*24*time.Hour {
		s.log.Warn("keygate's internal CA expires within a year; plan to replace it and hand clients the new bundle", "expires", s.ca.CAExpires())
	}
	if s.keys, err = token.LoadKeys(cfg.DataPath(TokenKeysFile), now); err != nil {
		return [sha256.Size]byte{}, err
	}
	if s.secrets != nil {
		s.keys.Propagation = keyPropagation
	}
	if rotated, err := s.keys.Maintain(now); err != nil {
		return [sha256.Size]byte{}, err
	} else if rotated {
		s.log.Info("rotated token signing key", "key_ids", s.keys.KeyIDs())
	}
	if m := cfg.SSO.SAML; m != nil {
		if s.samlKey, s.samlCert, err = saml.LoadOrCreateKey(cfg.DataPath(SAMLKeyFile), m.EntityID, now); err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	return adminCredential(cfg.DataPath(AdminCredentialFile))
}

// maintainSecrets rotates the token signing key and renews the gateway
// certificate when due; on a shared state database, under the secrets
// lock and with what other servers rotated pulled first.
func (s *Server) maintainSecrets(ctx context.Context) {
	rotate := func() error {
		if s.secrets != nil {
			if _, err := s.keys.Reload(); err != nil {
				return err
			}
		}
		rotated, err := s.keys.Maintain(time.Now())
		if err != nil {
			return fmt.Errorf("token key maintenance: %w", err)
		}
		if rotated {
			s.log.Info("rotated token signing key", "key_ids", s.keys.KeyIDs())
		}
		return nil
	}
	var err error
	if s.secrets != nil {
		err = s.secrets.sync(ctx, rotate)
	} else {
		err = rotate()
	}
	if err != nil {
		s.log.Error("token key maintenance failed", "err", err)
	}
	if renewed, err := s.ca.Maintain(s.cfg.PublicHostnames, time.Now()); err != nil {
		s.log.Error("gateway certificate renewal failed", "err", err)
	} else if renewed {
		s.log.Info("renewed gateway certificate", "hostnames", s.cfg.PublicHostnames)
	}
}

// pullSecrets reads what other servers shared since the last look, and
// takes in new token keys at once; a CA or SAML key another server
// replaced needs a restart, which it says.
func (s *Server) pullSecrets(ctx context.Context) {
	replaced, err := s.secrets.pull(ctx)
	if err != nil {
		s.log.Error("reading the shared secrets failed; retrying", "err", err)
		return
	}
	if slices.Contains(replaced, TokenKeysFile) {
		if _, err := s.keys.Reload(); err != nil {
			s.log.Error("loading token keys another server shared failed", "err", err)
		} else {
			s.log.Info("took in token keys another server shared", "key_ids", s.keys.KeyIDs())
		}
	}
	for _, name := range replaced {
		if name != TokenKeysFile {
			s.log.Warn("another server replaced a shared secret; restart this one to use it", "secret", name)
		}
	}
}
