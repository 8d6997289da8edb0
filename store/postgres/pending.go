package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/store"
)

// PutPending implements store.Store. Pending sign-in state changes no
// access, so it is written without a revision and is not on the feed.
func (s *Store) PutPending(ctx context.Context, p store.Pending, now time.Time, max int) (created, evicted bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM pending WHERE kind = $1 AND expires <= $2`, p.Kind, nanos(now)); err != nil {
			return err
		}
		if max > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pending WHERE kind = $1`, p.Kind).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				if _, err := tx.Exec(ctx, `DELETE FROM pending WHERE kind = $1 AND key IN
					(SELECT key FROM pending WHERE kind = $1 ORDER BY expires, id LIMIT $2)`, p.Kind, n-max+1); err != nil {
					return err
				}
				evicted = true
			}
		}
		tag, err := tx.Exec(ctx, `INSERT INTO pending (kind, key, value, expires) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			p.Kind, p.Key, p.Value, nanos(p.Expires))
		created = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("put pending %s: %w", p.Kind, err)
	}
	return created, evicted, nil
}

// GetPending implements store.Store.
func (s *Store) GetPending(ctx context.Context, kind, key string) (store.Pending, error) {
	return s.pendingRow(ctx, `SELECT value, expires FROM pending WHERE kind = $1 AND key = $2`, kind, key)
}

// TakePending implements store.Store.
func (s *Store) TakePending(ctx context.Context, kind, key string) (store.Pending, error) {
	return s.pendingRow(ctx, `DELETE FROM pending WHERE kind = $1 AND key = $2 RETURNING value, expires`, kind, key)
}

func (s *Store) pendingRow(ctx context.Context, q, kind, key string) (store.Pending, error) {
	p := store.Pending{Kind: kind, Key: key}
	var exp int64
	err := s.pool.QueryRow(ctx, q, kind, key).Scan(&p.Value, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Pending{}, fmt.Errorf("pending %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.Pending{}, fmt.Errorf("pending %s: %w", kind, err)
	}
	p.Expires = fromNanos(exp)
	return p, nil
}

// SwapPending implements store.Store.
func (s *Store) SwapPending(ctx context.Context, kind, key string, old, value []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE pending SET value = $4 WHERE kind = $1 AND key = $2 AND value = $3`, kind, key, old, value)
	if err != nil {
		return false, fmt.Errorf("swap pending %s: %w", kind, err)
	}
	return tag.RowsAffected() == 1, nil
}

// CountPending implements store.Store.
func (s *Store) CountPending(ctx context.Context, kind string, now time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pending WHERE kind = $1 AND expires > $2`, kind, nanos(now)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending %s: %w", kind, err)
	}
	return n, nil
}
