package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/postgres"
	"github.com/keygate/keygate/store/sqlite"
)

// MigrateResult is what a state migration copied.
type MigrateResult struct {
	// Tables counts the rows copied per state table, in copy order.
	Tables []TableCount
	// AuditEvents is how many audit events were copied and then verified
	// in the state database.
	AuditEvents int64
	// Secrets are the shared files of data_dir sealed into the database.
	Secrets []string
}

// TableCount is the number of rows of one table.
type TableCount struct {
	Table string
	Rows  int
}

// migrateBatch is how many rows or audit events one write carries.
const migrateBatch = 5000

// MigrateToPostgres copies the SQLite state in cfg's data_dir, whose
// server must be stopped, into the empty PostgreSQL state database that
// cfg's state section names: people, groups, memberships and their
// history, sign-in sessions (they keep working), provisioning tokens, the
// config history and the audit log, whose chain is checked in its new
// home before this returns. data_dir's CA, signing keys, admin credential
// and SAML key are sealed into the database with the secrets key, so
// every server started on it shares them. progress is told of each step.
func MigrateToPostgres(ctx context.Context, cfg *config.Config, log *slog.Logger, progress func(string)) (MigrateResult, error) {
	var res MigrateResult
	if !cfg.State.Shared() {
		return res, errors.New("the config names no state database: set state.postgres_url_env and state.secrets_key_env (see keygate's README, \"Running several keygate servers\"), then run this again")
	}
	url, err := cfg.State.PostgresURL()
	if err != nil {
		return res, err
	}
	key, err := cfg.State.SecretsKey()
	if err != nil {
		return res, err
	}
	dataDir := cfg.Resolve(cfg.DataDir)
	lock, err := AcquireLock(dataDir, "state migrate")
	if err != nil {
		var inUse *InUseError
		if errors.As(err, &inUse) {
			return res, fmt.Errorf("%w: stop it first, so that nothing changes during the copy", err)
		}
		return res, err
	}
	defer lock.Release()
	src, err := sqlite.OpenReadOnly(ctx, cfg.DataPath(StoreFile))
	if err != nil {
		return res, err
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, url)
	if err != nil {
		return res, fmt.Errorf("state database (%s): %w", cfg.State.PostgresURLEnv, err)
	}
	defer dst.Close()
	if empty, err := dst.Empty(ctx); err != nil {
		return res, err
	} else if !empty {
		return res, fmt.Errorf("%w: it already holds people, sessions or audit events; migrate into a new, empty database", postgres.ErrNotEmpty)
	}
	partial := func(err error) error {
		return fmt.Errorf("%w; the state database now holds part of the copy: drop it, create it empty again and run the migration again (data_dir is unchanged)", err)
	}

	for _, t := range sqlite.StateTables {
		var batch [][]any
		n := 0
		flush := func() error {
			err := dst.ImportRows(ctx, t.Name, t.Columns, batch)
			batch = batch[:0]
			return err
		}
		err := src.Rows(ctx, t, func(values []any) error {
			batch = append(batch, values)
			n++
			if len(batch) == migrateBatch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return res, partial(err)
		}
		if got, err := dst.CountRows(ctx, t.Name); err != nil {
			return res, partial(err)
		} else if got != n {
			return res, partial(fmt.Errorf("%s holds %d rows in the state database, %d in data_dir", t.Name, got, n))
		}
		res.Tables = append(res.Tables, TableCount{t.Name, n})
		progress(fmt.Sprintf("copied %s (%d)", t.Name, n))
	}

	var after int64
	for {
		events, err := src.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: migrateBatch})
		if err != nil {
			return res, partial(err)
		}
		if len(events) == 0 {
			break
		}
		if err := dst.AppendAudit(ctx, events); err != nil {
			return res, partial(err)
		}
		after = events[len(events)-1].Seq
		progress(fmt.Sprintf("copied the audit log up to event %d", after))
	}

	mirror, err := newSecretMirror(dst, key, cfg.State.SecretsKeyEnv, dataDir, log)
	if err != nil {
		return res, err
	}
	if err := mirror.checkKey(ctx); err != nil {
		return res, err
	}
	if err := mirror.push(ctx); err != nil {
		return res, partial(err)
	}
	for _, f := range sharedFiles {
		if mirror.versions[f.name] != 0 {
			res.Secrets = append(res.Secrets, f.name)
		}
	}
	progress(fmt.Sprintf("sealed %d secrets of data_dir into the state database", len(res.Secrets)))

	n, err := audit.Verify(ctx, dst)
	if err != nil {
		return res, partial(fmt.Errorf("the copied audit log does not verify: %w", err))
	}
	if n != after {
		return res, partial(fmt.Errorf("the copied audit log holds %d events, data_dir's %d", n, after))
	}
	res.AuditEvents = n
	return res, nil
}
