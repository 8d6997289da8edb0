package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Pending sign-in state is written outside Store.tx: it changes no access,
// so it neither invalidates the read cache nor goes on the change feed.

// PutPending implements store.Store.
func (s *Store) PutPending(ctx context.Context, p store.Pending, now time.Time, max int) (created, evicted bool, err error) {
	err = s.state.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending WHERE kind = ? AND expires <= ?`, p.Kind, nanos(now)); err != nil {
			return err
		}
		if max > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pending WHERE kind = ?`, p.Kind).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				if _, err := tx.ExecContext(ctx, `DELETE FROM pending WHERE kind = ? AND key IN
					(SELECT key FROM pending WHERE kind = ? ORDER BY expires, rowid LIMIT ?)`, p.Kind, p.Kind, n-max+1); err != nil {
					return err
				}
				evicted = true
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO pending (kind, key, value, expires) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			p.Kind, p.Key, p.Value, nanos(p.Expires))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("put pending %s: %w", p.Kind, err)
	}
	return created, evicted, nil
}

// GetPending implements store.Store.
func (s *Store) GetPending(ctx context.Context, kind, key string) (store.Pending, error) {
	p := store.Pending{Kind: kind, Key: key}
	var exp int64
	err := s.state.queryRow(ctx, `SELECT value, expires FROM pending WHERE kind = ? AND key = ?`, kind, key).Scan(&p.Value, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Pending{}, fmt.Errorf("pending %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.Pending{}, fmt.Errorf("get pending %s: %w", kind, err)
	}
	p.Expires = fromNanos(exp)
	return p, nil
}

// SwapPending implements store.Store.
func (s *Store) SwapPending(ctx context.Context, kind, key string, old, value []byte) (bool, error) {
	var n int64
	err := s.state.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pending SET value = ? WHERE kind = ? AND key = ? AND value = ?`, value, kind, key, old)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("swap pending %s: %w", kind, err)
	}
	return n == 1, nil
}

// TakePending implements store.Store.
func (s *Store) TakePending(ctx context.Context, kind, key string) (store.Pending, error) {
	p := store.Pending{Kind: kind, Key: key}
	var exp int64
	err := s.state.tx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `DELETE FROM pending WHERE kind = ? AND key = ? RETURNING value, expires`, kind, key).Scan(&p.Value, &exp)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return store.Pending{}, fmt.Errorf("pending %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.Pending{}, fmt.Errorf("take pending %s: %w", kind, err)
	}
	p.Expires = fromNanos(exp)
	return p, nil
}

// CountPending implements store.Store.
func (s *Store) CountPending(ctx context.Context, kind string, now time.Time) (int, error) {
	var n int
	if err := s.state.queryRow(ctx, `SELECT count(*) FROM pending WHERE kind = ? AND expires > ?`, kind, nanos(now)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending %s: %w", kind, err)
	}
	return n, nil
}
