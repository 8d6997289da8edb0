package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/keygate/keygate/upstream"
)

// Standing implements upstream.Database: the roles that can log in or are
// superusers, other than keygate's admin role and PostgreSQL's own pg_
// roles, and keygate's person roles found LOGIN with no login window open.
// Whether a role has a password is in pg_authid, which only a superuser
// reads: when keygate's admin role may not, a LOGIN role is listed as such.
func (u *Upstream) Standing(ctx context.Context) ([]upstream.Standing, error) {
	var readsAuthID bool
	if err := u.admin.QueryRow(ctx, `SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')`).Scan(&readsAuthID); err != nil {
		return nil, u.adminErr("scan for standing credentials", err)
	}
	password := `NULL::bool`
	if readsAuthID {
		password = `(SELECT a.rolpassword IS NOT NULL FROM pg_catalog.pg_authid a WHERE a.oid = r.oid)`
	}
	rows, err := u.admin.Query(ctx, `SELECT r.rolname, r.rolsuper, r.rolcanlogin, `+password+`,
		coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '')
		FROM pg_catalog.pg_roles r
		WHERE (r.rolcanlogin OR r.rolsuper) AND r.rolname <> current_user AND r.rolname !~ '^pg_'
		ORDER BY r.rolname`)
	if err != nil {
		return nil, u.adminErr("scan for standing credentials", err)
	}
	defer rows.Close()
	var out []upstream.Standing
	for rows.Next() {
		var name, comment string
		var super, login bool
		var hasPassword *bool
		if err := rows.Scan(&name, &super, &login, &hasPassword, &comment); err != nil {
			return nil, u.adminErr("scan for standing credentials", err)
		}
		if comment == roleMarker {
			if login && !u.server.windowOpen(name) {
				out = append(out, upstream.Standing{Name: name, Managed: true,
					Why: "keygate's person role is LOGIN with no login window open: something outside keygate changed it, or keygate could not put it back at rest"})
			}
			continue
		}
		var why []string
		if super {
			why = append(why, "superuser")
		}
		switch {
		case !login:
		case hasPassword == nil:
			why = append(why, "can log in (keygate's admin role may not read pg_authid to tell whether it has a password)")
		case *hasPassword:
			why = append(why, "can log in with a password")
		default:
			why = append(why, "can log in without a password, as pg_hba.conf allows (trust, peer, cert)")
		}
		out = append(out, upstream.Standing{Name: name, Why: strings.Join(why, "; ")})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan for standing credentials: %w", err)
	}
	return out, nil
}

// windowOpen reports whether role's login window is open now.
func (s *server) windowOpen(role string) bool {
	s.mu.Lock()
	w, ok := s.windows[role]
	s.mu.Unlock()
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inflight > 0
}
