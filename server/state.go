package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/keygate/keygate/internal/atomicfile"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/sso/saml"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/postgres"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream"
)

// keyPropagation is how long a token signing key one server adds only
// verifies, before it signs: the others pull it well within that time
// (secretsPullEvery), so none refuses a token signed with it.
const (
	keyPropagation   = 2 * time.Minute
	secretsPullEvery = 30 * time.Second
)

// maxFeedLag is how far behind the shared state's change feed may fall
// before this server starts no new session: past it, a revocation made
// through another server may not have reached this one. The feed catches
// up at least every second while the database answers.
const maxFeedLag = 5 * time.Second

// stateCurrent reports whether this server has seen every change to the
// shared state up to maxFeedLag ago; on SQLite it always has.
func (s *Server) stateCurrent() error {
	if s.shared == nil {
		return nil
	}
	if lag := s.shared.FeedLag(); lag > maxFeedLag {
		return fmt.Errorf("the state database has not answered for %s (over %s): revocations made through other servers may not have reached this one", lag.Round(time.Second), maxFeedLag)
	}
	if err := s.rulesDiffer.Load(); err != nil {
		return *err
	}
	if err := s.nodeTaken.Load(); err != nil {
		return *err
	}
	return nil
}

// checkNode makes sure this server still holds its node name, which a
// restart of the state database lets go of: it takes it back. While
// another connection holds it (a second server under the same name, or
// this server's own connection from before a network failure, until the
// state database notices it is gone), the server starts no session: two
// writers of one audit chain would break it.
func (s *Server) checkNode(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := s.shared.NodeHeld(ctx)
	if errors.Is(err, postgres.ErrNodeTaken) {
		taken := fmt.Errorf("%w: node %s (give each server its own state.node; after a network failure the state database lets go of the old connection within its TCP keepalive time)", err, s.node)
		if s.nodeTaken.Swap(&taken) == nil {
			s.log.Error("this server's node name is held by another connection; starting no session until it is back", "node", s.node, "err", err)
		}
		return
	}
	// Other errors mean the state database is not answering, which the
	// feed's lag reports.
	if err == nil && s.nodeTaken.Swap(nil) != nil {
		s.log.Info("this server holds its node name again", "node", s.node)
	}
}

// followRules keeps this server's access rules those the servers sharing
// its state loaded last: when the newest in the config history is not the
// one in force here, the server reads its config file again, and applies
// it if it holds those rules. If it does not, the server starts no session
// until it does, rather than grant by other rules than its peers (and it
// records nothing, so that the history does not alternate).
func (s *Server) followRules(ctx context.Context) {
	newest, err := s.store.ConfigVersionAt(ctx, time.Now())
	if err != nil {
		return
	}
	mine := s.rulesDigest.Load()
	if mine != nil && *mine == newest.Digest {
		s.rulesDiffer.Store(nil)
		return
	}
	next, err := config.Load(s.cfg.Path())
	var digest string
	if err == nil {
		digest, err = rulesDigest(next)
	}
	if err == nil && digest == newest.Digest {
		if _, err := s.Reload(ctx); err == nil {
			s.log.Info("applied the access rules another server loaded", "digest", digest)
			s.rulesDiffer.Store(nil)
		}
		return
	}
	differ := fmt.Errorf("this server's access rules differ from those another server loaded at %s (%s in the config history): put the same config on every server; this one takes it up within %s",
		newest.Loaded.Format(time.RFC3339), shortDigest(newest.Digest), followRulesEvery)
	if err != nil {
		differ = fmt.Errorf("%w (the config file does not load here: %v)", differ, err)
	}
	if s.rulesDiffer.Swap(&differ) == nil {
		s.log.Error("access rules differ from the other servers'; starting no session until they agree", "err", differ)
	}
}

// startRules records the access rules a server starts with, as the
// newest, unless other servers run on the shared state: a start then
// joins the rules in force rather than impose its own, so that a server
// started with an old config file refuses sessions itself (see
// followRules) instead of making every other server refuse theirs. Only
// a reload (or the first server to start) changes the rules in force.
func (s *Server) startRules(ctx context.Context, cfg *config.Config, now time.Time) error {
	if s.shared == nil {
		return s.recordRules(ctx, cfg, now)
	}
	others, err := s.shared.OtherNodes(ctx)
	if err != nil {
		return err
	}
	_, err = s.store.ConfigVersionAt(ctx, now)
	if others == 0 || errors.Is(err, store.ErrNotFound) {
		return s.recordRules(ctx, cfg, now)
	}
	if err != nil {
		return err
	}
	digest, err := rulesDigest(cfg)
	if err != nil {
		return err
	}
	s.rulesDigest.Store(&digest)
	s.followRules(ctx)
	return nil
}

// rulesDigest is the digest of cfg's access rules, as the config history
// records it.
func rulesDigest(cfg *config.Config) (string, error) {
	r, err := cfg.Rules()
	if err != nil {
		return "", err
	}
	_, digest, err := r.Encode()
	return digest, err
}

// followRulesEvery is how often a server on a shared state compares its
// access rules with the newest the others loaded.
const followRulesEvery = 5 * time.Second

func shortDigest(d string) string { return d[:min(len(d), 12)] }

// watchFeed logs when the shared state's change feed falls behind and
// when it catches up again, so that the refusals have a cause in the log.
func (s *Server) watchFeed(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	rules := time.NewTicker(followRulesEvery)
	defer rules.Stop()
	var behind bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-rules.C:
			s.followRules(ctx)
			continue
		case <-t.C:
		}
		s.checkNode(ctx)
		err := s.stateCurrent()
		switch {
		case err != nil && !behind:
			s.log.Error("state database unreachable; refusing new sessions until it answers", "err", err)
		case err == nil && behind:
			s.log.Info("state database answers again; serving new sessions")
		}
		behind = err != nil
	}
}

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
	s.store, s.shared, s.node = st, st, node
	if err := st.HoldNode(ctx, node); err != nil {
		if errors.Is(err, postgres.ErrNodeTaken) {
			return fmt.Errorf("%w: give each server its own state.node", err)
		}
		return err
	}
	// This server's backends of a previous run are gone with it.
	if err := st.ReleaseNode(ctx, node); err != nil {
		return err
	}
	s.peers = backendClaims{st: st, node: node}
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
	if s.auditKey, err = auditSigningKey(cfg.DataPath(AuditKeyFile), cfg.DataPath(AuditPublicKeyFile)); err != nil {
		return [sha256.Size]byte{}, err
	}
	return adminCredential(cfg.DataPath(AdminCredentialFile))
}

// auditSigningKey reads the key that signs audit checkpoints from path,
// creating it (mode 0600) on first start, and writes its public half to
// pubPath (0644), the file an auditor is given.
func auditSigningKey(path, pubPath string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("make the audit signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("make the audit signing key: %w", err)
		}
		raw = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := atomicfile.WriteFile(path, raw, 0o600); err != nil {
			return nil, fmt.Errorf("save the audit signing key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read the audit signing key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s is not a PEM key: remove it to have a new one made (checkpoints signed with the old one then verify only with its public key)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	key, ok := parsed.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s is not an Ed25519 key: remove it to have a new one made", path)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	if err := atomicfile.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("write the audit public key: %w", err)
	}
	return key, nil
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

// backendClaims tells the upstream watchers of the other servers sharing
// the state which upstream backends this one opened.
type backendClaims struct {
	st   *postgres.Store
	node string
}

func (c backendClaims) Claim(ctx context.Context, address string, pid uint32) error {
	return c.st.ClaimBackend(ctx, c.node, address, pid, time.Now())
}

func (c backendClaims) Release(ctx context.Context, address string, pid uint32) error {
	return c.st.ReleaseBackend(ctx, c.node, address, pid)
}

func (c backendClaims) Claimed(ctx context.Context, address string, backends map[uint32]time.Time) (map[uint32]bool, error) {
	return c.st.ClaimedBackends(ctx, address, backends, upstream.PeerClaimWindow)
}

func (c backendClaims) LockWindow(ctx context.Context, address, role string) (func(), error) {
	return c.st.Lock(ctx, "login window "+address+" "+role)
}

// cancelRelay passes the cancel requests that match no session here to
// the other servers through the state database, and hands this gateway
// theirs. The payload is "engine id proof" with the proof in hex.
type cancelRelay struct {
	st  *postgres.Store
	log *slog.Logger
}

func (r cancelRelay) relay(ctx context.Context, engine string, id uint32, proof [32]byte) {
	payload := fmt.Sprintf("%s %d %s", engine, id, hex.EncodeToString(proof[:]))
	if err := r.st.RelayCancel(ctx, payload); err != nil {
		r.log.Warn("could not pass a cancel request to the other keygate servers", "err", err)
	}
}

// receiveCancel reads a relayed cancel request; false for one it cannot
// read.
func receiveCancel(payload string) (engine string, id uint32, proof [32]byte, ok bool) {
	var idText, proofText string
	if _, err := fmt.Sscanf(payload, "%s %s %s", &engine, &idText, &proofText); err != nil {
		return "", 0, proof, false
	}
	n, err := strconv.ParseUint(idText, 10, 32)
	if err != nil {
		return "", 0, proof, false
	}
	raw, err := hex.DecodeString(proofText)
	if err != nil || len(raw) != len(proof) {
		return "", 0, proof, false
	}
	copy(proof[:], raw)
	return engine, uint32(n), proof, true
}
