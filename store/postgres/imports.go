package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNotEmpty is returned by Import into a database that already holds
// state: a copy goes into an empty one only.
var ErrNotEmpty = errors.New("the state database is not empty")

// Empty reports whether the database holds no person, group, session or
// audit event: a copy from another store may go in.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM groups) OR EXISTS (SELECT 1 FROM sessions)
		OR EXISTS (SELECT 1 FROM provisioning_tokens) OR EXISTS (SELECT 1 FROM config_history) OR EXISTS (SELECT 1 FROM audit_events)`).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("look into the state database: %w", err)
	}
	return !found, nil
}

// ImportRows inserts rows into table, columns named, converting what
// another backend keeps differently: integers for booleans, text for
// bytes and back. It is for moving a whole state over, once; the change
// feed does not carry it.
func (s *Store) ImportRows(ctx context.Context, table string, columns []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	types := map[string]string{}
	tr, err := s.pool.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`, table)
	if err != nil {
		return fmt.Errorf("import %s: %w", table, err)
	}
	for tr.Next() {
		var name, typ string
		if err := tr.Scan(&name, &typ); err != nil {
			tr.Close()
			return fmt.Errorf("import %s: %w", table, err)
		}
		types[name] = typ
	}
	tr.Close()
	if err := tr.Err(); err != nil {
		return fmt.Errorf("import %s: %w", table, err)
	}
	for _, row := range rows {
		for i, v := range row {
			typ, ok := types[columns[i]]
			if !ok {
				return fmt.Errorf("import %s: no column %s", table, columns[i])
			}
			row[i] = convert(typ, v)
		}
	}
	if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("import %s: %w", table, err)
	}
	return nil
}

func convert(typ string, v any) any {
	switch typ {
	case "boolean":
		if n, ok := v.(int64); ok {
			return n != 0
		}
	case "bytea":
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	case "text":
		if b, ok := v.([]byte); ok {
			return string(b)
		}
	}
	return v
}

// CountRows counts the rows of table, one of the state tables, to check a
// copy against its source.
func (s *Store) CountRows(ctx context.Context, table string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}
