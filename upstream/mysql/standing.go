package mysql

import (
	"context"
	"fmt"
	"strings"

	"github.com/keygate/keygate/upstream"
)

// Standing implements upstream.Database: the accounts that are superusers
// or can log in with a password and are not locked, other than keygate's
// admin user, and keygate's person users found unlocked with no login
// window open. A person user is known by the keygate role it was granted.
func (u *Upstream) Standing(ctx context.Context) ([]upstream.Standing, error) {
	// MariaDB keeps the account lock in mysql.global_priv's JSON only,
	// where JSON_VALUE reads true as 1.
	rows, err := u.admin.QueryContext(ctx, `SELECT u.User, u.Host, u.Super_priv = 'Y',
		COALESCE(JSON_VALUE(g.Priv, '$.account_locked'), 'false') IN ('true', '1'),
		u.authentication_string <> '' OR u.Password <> '', u.plugin,
		EXISTS (SELECT 1 FROM mysql.roles_mapping m WHERE m.User = u.User AND m.Host = u.Host AND m.Role LIKE 'keygate\_%')
		FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host
		WHERE u.is_role = 'N' AND u.User <> ? ORDER BY u.User, u.Host`, u.cfg.AdminUser)
	if err != nil {
		return nil, u.adminErr("scan for standing credentials", err)
	}
	defer rows.Close()
	var out []upstream.Standing
	for rows.Next() {
		var user, host, plugin string
		var super, locked, password, managed bool
		if err := rows.Scan(&user, &host, &super, &locked, &password, &plugin, &managed); err != nil {
			return nil, u.adminErr("scan for standing credentials", err)
		}
		name := account(user)
		if host != "%" {
			name = quoteString(user) + "@" + quoteString(host)
		}
		if managed {
			if !locked && !u.server.isOpen(user) {
				out = append(out, upstream.Standing{Name: name, Managed: true,
					Why: "keygate's person user is unlocked with no login window open: something outside keygate changed it, or keygate could not lock it again"})
			}
			continue
		}
		var why []string
		if super {
			why = append(why, "superuser (SUPER)")
		}
		if !locked {
			switch {
			case password:
				why = append(why, "can log in with a password")
			case super:
				why = append(why, fmt.Sprintf("logs in by %s", plugin))
			}
		}
		if len(why) > 0 {
			out = append(out, upstream.Standing{Name: name, Why: strings.Join(why, "; ")})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan for standing credentials: %w", err)
	}
	return out, nil
}

// isOpen reports whether user's login window is open now.
func (s *server) isOpen(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[user]
}
