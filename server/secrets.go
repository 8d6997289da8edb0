package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/internal/atomicfile"
	"github.com/keygate/keygate/internal/seal"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/store"
)

// secretStore is the part of a shared state database that keeps the
// secrets every server must agree on, sealed.
type secretStore interface {
	Secret(ctx context.Context, name string) ([]byte, int64, error)
	PutSecret(ctx context.Context, name string, sealed []byte, version int64) (int64, error)
	WithSecretsLock(ctx context.Context, fn func() error) error
}

// sharedFile is a file in data_dir that every server sharing a state
// database must hold the same: a server that signs a token, presents a
// certificate or checks the admin credential does it as any other would.
type sharedFile struct {
	name string
	mode os.FileMode
}

// sharedFiles are the files the servers share. The gateway certificate is
// not one: each server issues its own, for the same public_hostnames, from
// the shared CA. Nor are the TLS session ticket keys, which live in memory.
var sharedFiles = []sharedFile{
	{pki.CAFile, 0o644},
	{pki.CAKeyFile, 0o600},
	{TokenKeysFile, 0o600},
	{AdminCredentialFile, 0o600},
	{SAMLKeyFile, 0o600},
	{AuditKeyFile, 0o600},
}

// keyCheck is a sealed value whose only use is to tell, at start, whether
// this server has the key the others sealed with.
const keyCheck = "key-check"

// secretMirror keeps data_dir's shared files and their sealed copies in
// the state database the same. The database is the source: a server pulls
// what is there into data_dir, lets the parts that own the files create or
// rotate them, and pushes what changed, all under the secrets lock. The
// copies in data_dir are what the local commands (keygate ca, keygate
// admin) read, as on a lone server.
type secretMirror struct {
	st     secretStore
	box    *seal.Box
	dir    string
	keyEnv string // the environment variable the key came from, for errors
	log    *slog.Logger
	// versions are the database versions of the files as last pulled or
	// pushed; held is their content then.
	versions map[string]int64
	held     map[string][]byte
}

func newSecretMirror(st secretStore, key []byte, keyEnv, dir string, log *slog.Logger) (*secretMirror, error) {
	box, err := seal.New(key)
	if err != nil {
		return nil, err
	}
	return &secretMirror{st: st, box: box, dir: dir, keyEnv: keyEnv, log: log, versions: map[string]int64{}, held: map[string][]byte{}}, nil
}

// checkKey makes sure this server's key is the one the secrets were sealed
// with, sealing the check value when this is the first server.
func (m *secretMirror) checkKey(ctx context.Context) error {
	sealed, _, err := m.st.Secret(ctx, keyCheck)
	if errors.Is(err, store.ErrNotFound) {
		if _, err := m.st.PutSecret(ctx, keyCheck, m.box.Seal(keyCheck, []byte("keygate")), 0); err != nil {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := m.box.Open(keyCheck, sealed); err != nil {
		return fmt.Errorf("%s does not open the secrets in the state database: every server needs the key the first one started with (%w)", m.keyEnv, err)
	}
	return nil
}

// pull writes into data_dir every shared file the database holds that
// differs from the local copy; it reports which files it replaced.
func (m *secretMirror) pull(ctx context.Context) ([]string, error) {
	var replaced []string
	for _, f := range sharedFiles {
		sealed, version, err := m.st.Secret(ctx, f.name)
		if errors.Is(err, store.ErrNotFound) {
			m.versions[f.name], m.held[f.name] = 0, nil
			continue
		}
		if err != nil {
			return replaced, err
		}
		if version == m.versions[f.name] && m.held[f.name] != nil {
			continue
		}
		plain, err := m.box.Open(f.name, sealed)
		if err != nil {
			return replaced, fmt.Errorf("%s: %w", m.keyEnv, err)
		}
		path := filepath.Join(m.dir, f.name)
		local, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return replaced, fmt.Errorf("read %s: %w", path, err)
		}
		if !bytes.Equal(local, plain) {
			if err := atomicfile.WriteFile(path, plain, f.mode); err != nil {
				return replaced, fmt.Errorf("write shared secret %s: %w", f.name, err)
			}
			replaced = append(replaced, f.name)
		}
		m.versions[f.name], m.held[f.name] = version, plain
	}
	return replaced, nil
}

// push seals into the database every shared file in data_dir that differs
// from what was last pulled: the ones this server created or rotated. It
// runs under the secrets lock, after a pull, so a version that moved means
// a server wrote without the lock: that is an error, not something to
// overwrite.
func (m *secretMirror) push(ctx context.Context) error {
	for _, f := range sharedFiles {
		path := filepath.Join(m.dir, f.name)
		local, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if bytes.Equal(local, m.held[f.name]) {
			continue
		}
		version, err := m.st.PutSecret(ctx, f.name, m.box.Seal(f.name, local), m.versions[f.name])
		if err != nil {
			return fmt.Errorf("share %s: %w", f.name, err)
		}
		m.versions[f.name], m.held[f.name] = version, local
		m.log.Info("shared a secret with the other servers", "secret", f.name, "version", version)
	}
	return nil
}

// sync pulls, runs fn (which may create or change shared files) and
// pushes, under the secrets lock.
func (m *secretMirror) sync(ctx context.Context, fn func() error) error {
	return m.st.WithSecretsLock(ctx, func() error {
		if _, err := m.pull(ctx); err != nil {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
		return m.push(ctx)
	})
}
