package postgres

import (
	"context"
	"fmt"
	"time"
)

// ClaimBackend records that node opened backend pid on the upstream server
// at address, at the time given.
func (s *Store) ClaimBackend(ctx context.Context, node, address string, pid uint32, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO upstream_backends (address, pid, node, claimed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (address, pid) DO UPDATE SET node = EXCLUDED.node, claimed = EXCLUDED.claimed`, address, int64(pid), node, nanos(at))
	if err != nil {
		return fmt.Errorf("claim upstream backend %d on %s: %w", pid, address, err)
	}
	return nil
}

// ReleaseBackend forgets node's claim on a backend.
func (s *Store) ReleaseBackend(ctx context.Context, node, address string, pid uint32) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM upstream_backends WHERE address = $1 AND pid = $2 AND node = $3`, address, int64(pid), node); err != nil {
		return fmt.Errorf("release upstream backend %d on %s: %w", pid, address, err)
	}
	return nil
}

// ReleaseNode forgets every claim of node: a server starting again holds
// no backend of its previous run.
func (s *Store) ReleaseNode(ctx context.Context, node string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM upstream_backends WHERE node = $1`, node); err != nil {
		return fmt.Errorf("release upstream backends of node %s: %w", node, err)
	}
	return nil
}

// ClaimedBackends reports which of the backends on address (pid → when it
// started) some server claimed within window of its start; a zero start
// matches any claim.
func (s *Store) ClaimedBackends(ctx context.Context, address string, backends map[uint32]time.Time, window time.Duration) (map[uint32]bool, error) {
	pids := make([]int64, 0, len(backends))
	for pid := range backends {
		pids = append(pids, int64(pid))
	}
	rows, err := s.pool.Query(ctx, `SELECT pid, claimed FROM upstream_backends WHERE address = $1 AND pid = ANY($2)`, address, pids)
	if err != nil {
		return nil, fmt.Errorf("read upstream backends on %s: %w", address, err)
	}
	defer rows.Close()
	out := map[uint32]bool{}
	for rows.Next() {
		var pid, claimed int64
		if err := rows.Scan(&pid, &claimed); err != nil {
			return nil, fmt.Errorf("read upstream backends on %s: %w", address, err)
		}
		start := backends[uint32(pid)]
		if start.IsZero() || fromNanos(claimed).Sub(start).Abs() <= window {
			out[uint32(pid)] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read upstream backends on %s: %w", address, err)
	}
	return out, nil
}

// RelayCancel passes a cancel request this server could not match to the
// other servers (payload is theirs to read); it is not stored.
func (s *Store) RelayCancel(ctx context.Context, payload string) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, cancelChannel, payload); err != nil {
		return fmt.Errorf("relay cancel request: %w", err)
	}
	return nil
}

// OnRelayedCancel sets what is told of the cancel requests other servers
// relay (this server's own included, which match nothing here).
func (s *Store) OnRelayedCancel(fn func(payload string)) { s.feed.onCancel.Store(&fn) }
