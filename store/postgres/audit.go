package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/store"
)

const auditColumns = `seq, chain, chain_seq, time, type, actor, user_name, database, access, client, session_id, query, reason, detail, prev_hash, hash`

// auditCopyColumns are the columns AppendAudit writes: auditColumns and
// the folded user name.
var auditCopyColumns = append(strings.Split(strings.ReplaceAll(auditColumns, " ", ""), ","), "user_fold")

// foldASCII folds A-Z to a-z and leaves every other byte alone, the way
// SQLite's NOCASE compares: the audit's user filter matches what the SQLite
// store matches, for any bytes.
func foldASCII(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// bytesOf is a string as bytea: never NULL, even when empty.
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}

func scanAudit(row pgx.Row) (store.AuditEvent, error) {
	var e store.AuditEvent
	var t int64
	var typ, actor, user, database, access, client, sessionID, query, reason []byte
	if err := row.Scan(&e.Seq, &e.Chain, &e.ChainSeq, &t, &typ, &actor, &user, &database, &access, &client, &sessionID, &query, &reason, &e.Detail, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.Time = fromNanos(t)
	e.Type, e.Actor, e.User, e.Database, e.Access = string(typ), string(actor), string(user), string(database), string(access)
	e.Client, e.SessionID, e.Query, e.Reason = string(client), string(sessionID), string(query), string(reason)
	return e, nil
}

// AppendAudit implements store.Store. The batch takes its positions from
// audit_head and goes in with one COPY, in one transaction: all of it or,
// on any error (a chain sequence number used twice), none.
func (s *Store) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, `UPDATE audit_head SET seq = seq + $1 RETURNING seq`, len(events)).Scan(&head); err != nil {
			return err
		}
		first := head - int64(len(events)) + 1
		rows := make([][]any, len(events))
		for i, e := range events {
			detail := e.Detail
			if detail == nil {
				detail = []byte{}
			}
			// Detail is stored byte for byte: it is covered by the hash.
			rows[i] = []any{first + int64(i), e.Chain, e.ChainSeq, nanos(e.Time), bytesOf(e.Type), bytesOf(e.Actor), bytesOf(e.User), bytesOf(e.Database), bytesOf(e.Access),
				bytesOf(e.Client), bytesOf(e.SessionID), bytesOf(e.Query), bytesOf(e.Reason), detail, nonNil(e.PrevHash), nonNil(e.Hash), foldASCII(e.User)}
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, auditCopyColumns, pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit events %d to %d of chain %q: %w", events[0].ChainSeq, events[len(events)-1].ChainSeq, events[0].Chain, err)
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// LastAudit implements store.Store.
func (s *Store) LastAudit(ctx context.Context) (store.AuditEvent, error) {
	e, err := scanAudit(s.pool.QueryRow(ctx, `SELECT `+auditColumns+` FROM audit_events ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditEvent{}, fmt.Errorf("audit log is empty: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("last audit event: %w", err)
	}
	return e, nil
}

// ChainHead implements store.Store.
func (s *Store) ChainHead(ctx context.Context, chain string) (store.AuditEvent, error) {
	e, err := scanAudit(s.pool.QueryRow(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE chain = $1 ORDER BY chain_seq DESC LIMIT 1`, chain))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditEvent{}, fmt.Errorf("audit chain %q is empty: %w", chain, store.ErrNotFound)
	}
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("audit chain %q head: %w", chain, err)
	}
	return e, nil
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.User != "" {
		where = append(where, `user_fold = `+arg(foldASCII(q.User)))
	}
	if q.Database != "" {
		where = append(where, `database = `+arg([]byte(q.Database)))
	}
	if q.Type != "" {
		prefix := []byte(q.Type + ".")
		where = append(where, `(type = `+arg([]byte(q.Type))+` OR substring(type from 1 for `+arg(len(prefix))+`) = `+arg(prefix)+`)`)
	}
	if !q.Since.IsZero() {
		where = append(where, `time >= `+arg(nanos(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, `time < `+arg(nanos(q.Until)))
	}
	if q.AfterSeq > 0 {
		where = append(where, `seq > `+arg(q.AfterSeq))
	}
	sql := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sql += ` ORDER BY seq`
	if q.Limit > 0 {
		sql += ` LIMIT ` + arg(q.Limit)
	}
	events, err := collect(ctx, s.pool, sql, args, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return events, nil
}
