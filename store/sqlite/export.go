package sqlite

import (
	"context"
	"fmt"
	"strings"
)

// StateTables are the state's tables in an order that a copy can insert
// them in (a row's references before it), with the columns every backend
// keeps alike. Row ids that only order rows (membership_history,
// config_history) are left out: rows come in that order.
var StateTables = []Table{
	{"users", []string{"id", "user_name", "email", "display_name", "external_id", "active", "attributes", "profile", "created", "modified", "version"}, "id"},
	{"groups", []string{"id", "name", "external_id", "created", "modified", "version"}, "id"},
	{"members", []string{"group_id", "user_id"}, "group_id, user_id"},
	{"membership_history", []string{"group_id", "group_name", "user_id", "user_name", "joined", "joined_by", "left_at", "left_by"}, "id"},
	{"sessions", []string{"id", "secret_hash", "user_id", "created", "expires", "revoked", "source", "mfa", "tags", "groups"}, "id"},
	{"provisioning_tokens", []string{"id", "name", "secret_hash", "created", "expires", "revoked", "last_used"}, "id"},
	{"config_history", []string{"loaded", "digest", "rules", "permission_sets", "assignments", "people"}, "id"},
}

// Table is a state table to copy: its name, the columns copied and the
// order its rows are read in.
type Table struct {
	Name    string
	Columns []string
	OrderBy string
}

// Rows calls fn with each row of table t as the driver returns it (int64,
// string, []byte or nil), in t's order.
func (r *ReadOnly) Rows(ctx context.Context, t Table, fn func(values []any) error) error {
	rows, err := r.s.state.query(ctx, `SELECT `+strings.Join(t.Columns, ", ")+` FROM `+t.Name+` ORDER BY `+t.OrderBy)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		values := make([]any, len(t.Columns))
		ptrs := make([]any, len(values))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read %s: %w", t.Name, err)
		}
		if err := fn(values); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", t.Name, err)
	}
	return nil
}
