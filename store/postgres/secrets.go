package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/store"
)

// ErrSecretChanged is returned by PutSecret when the secret is no longer at
// the version the caller read: another server wrote it meanwhile.
var ErrSecretChanged = errors.New("the secret changed since it was read")

// Secret returns the sealed secret named name and its version, or
// store.ErrNotFound. The store never sees a secret unsealed.
func (s *Store) Secret(ctx context.Context, name string) (sealed []byte, version int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT sealed, version FROM secrets WHERE name = $1`, name).Scan(&sealed, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("secret %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read secret %q: %w", name, err)
	}
	return sealed, version, nil
}

// PutSecret stores a sealed secret if it is still at version (0: it does
// not exist yet), and returns its new version; ErrSecretChanged otherwise.
func (s *Store) PutSecret(ctx context.Context, name string, sealed []byte, version int64) (int64, error) {
	var next int64
	var err error
	if version == 0 {
		err = s.pool.QueryRow(ctx, `INSERT INTO secrets (name, sealed, version) VALUES ($1, $2, 1) ON CONFLICT (name) DO NOTHING RETURNING version`, name, sealed).Scan(&next)
	} else {
		err = s.pool.QueryRow(ctx, `UPDATE secrets SET sealed = $2, version = version + 1 WHERE name = $1 AND version = $3 RETURNING version`, name, sealed, version).Scan(&next)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("write secret %q: %w", name, ErrSecretChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("write secret %q: %w", name, err)
	}
	return next, nil
}

// secretsLockID is the advisory lock under which servers create and
// rotate the shared secrets, one at a time.
const secretsLockID = 0x6b6773656372 // "kgsecr"

// WithSecretsLock runs fn while holding the secrets lock, which no other
// server holds meanwhile: two servers starting at once do not both make a
// CA, and two rotating at once do not both add a signing key.
func (s *Store) WithSecretsLock(ctx context.Context, fn func() error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("secrets lock: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(secretsLockID)); err != nil {
		return fmt.Errorf("secrets lock: %w", err)
	}
	defer func() {
		// A lock left held (the connection broke) ends with the session.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(secretsLockID)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	return fn()
}
