package mysql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/access"
)

// ErrPrivileges means keygate's admin user lacks a privilege keygate needs
// to keep its guarantees; the error's text gives the GRANT statements that
// fix it.
var ErrPrivileges = errors.New("keygate's admin user lacks privileges it needs")

// ErrEngine means the server is not one keygate can manage yet.
var ErrEngine = errors.New("unsupported upstream server")

// recheckPrivileges is how often a database whose admin user lacked a
// privilege is checked again when someone logs in to it, so that a fix
// applies without a restart.
var recheckPrivileges = 5 * time.Second

// globalPrivileges are what the admin user needs on *.*: CREATE USER to
// create roles and person users, lock, unlock and re-password them;
// PROCESS to see every user's connections in PROCESSLIST; CONNECTION ADMIN
// to KILL connections of other users.
var globalPrivileges = []string{"CREATE USER", "PROCESS", "CONNECTION ADMIN"}

// Check connects as the admin user, checks its privileges, and creates the
// level roles with their grants. A missing privilege is an error wrapping
// ErrPrivileges that lists the GRANT statements to run; until they are
// run, WithLogin refuses this database.
func (u *Upstream) Check(ctx context.Context) error {
	u.checkMu.Lock()
	defer u.checkMu.Unlock()
	err := u.check(ctx)
	u.checkedAt = time.Now()
	u.checkErr = err
	u.checkOK.Store(err == nil)
	return err
}

// Ready reports whether the last Check passed.
func (u *Upstream) Ready() bool { return u.checkOK.Load() }

// checked runs Check on first use, and again at most every
// recheckPrivileges while it fails.
func (u *Upstream) checked(ctx context.Context) error {
	if u.checkOK.Load() {
		return nil
	}
	u.checkMu.Lock()
	if u.checkOK.Load() {
		u.checkMu.Unlock()
		return nil
	}
	err, at := u.checkErr, u.checkedAt
	u.checkMu.Unlock()
	if errors.Is(err, ErrPrivileges) && time.Since(at) < recheckPrivileges {
		return err
	}
	return u.Check(ctx)
}

func (u *Upstream) check(ctx context.Context) error {
	var version, current string
	var maxConns int
	if err := u.admin.QueryRowContext(ctx, "SELECT VERSION(), CURRENT_USER(), @@max_connections").Scan(&version, &current, &maxConns); err != nil {
		return u.adminErr("connect as admin", err)
	}
	u.pool.SizeIdle(maxConns)
	if !strings.Contains(version, "MariaDB") {
		return fmt.Errorf("%w: database %s is MySQL %s; keygate manages MariaDB 10.11 and later for now", ErrEngine, u.cfg.Name, version)
	}
	if err := u.checkPrivileges(ctx, grantee(current)); err != nil {
		// The server applies global and schema privileges to a session
		// when it starts: once they are granted, only new connections have
		// them. Drop the idle ones so the next check starts afresh.
		u.admin.SetMaxIdleConns(0)
		u.admin.SetMaxIdleConns(adminIdle)
		return err
	}
	return u.ensureRoles(ctx)
}

// grantee turns CURRENT_USER()'s user@host into information_schema's
// 'user'@'host'.
func grantee(current string) string {
	i := strings.LastIndex(current, "@")
	if i < 0 {
		return "'" + current + "'@''"
	}
	return "'" + current[:i] + "'@'" + current[i+1:] + "'"
}

// held is what a user holds, from information_schema: global privileges
// and, per schema, privileges; each with whether it may grant it.
type held struct {
	global map[string]bool            // privilege → grantable
	schema map[string]map[string]bool // schema → privilege → grantable
}

func (h held) has(schema, priv string, grantable bool) bool {
	if g, ok := h.global[priv]; ok && (g || !grantable) {
		return true
	}
	g, ok := h.schema[schema][priv]
	return ok && (g || !grantable)
}

func (u *Upstream) readHeld(ctx context.Context, who string) (held, error) {
	h := held{global: map[string]bool{}, schema: map[string]map[string]bool{}}
	rows, err := u.admin.QueryContext(ctx, "SELECT '', PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ? "+
		"UNION ALL SELECT TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?", who, who)
	if err != nil {
		return h, u.adminErr("read the admin user's privileges", err)
	}
	defer rows.Close()
	for rows.Next() {
		var schema, priv, grantable string
		if err := rows.Scan(&schema, &priv, &grantable); err != nil {
			return h, u.adminErr("read the admin user's privileges", err)
		}
		g := grantable == "YES"
		if schema == "" {
			h.global[priv] = g
			continue
		}
		if h.schema[schema] == nil {
			h.schema[schema] = map[string]bool{}
		}
		h.schema[schema][priv] = g
	}
	if err := rows.Err(); err != nil {
		return h, u.adminErr("read the admin user's privileges", err)
	}
	return h, nil
}

// checkPrivileges compares what the admin user holds with what keygate
// needs and returns the GRANT statements that are missing.
func (u *Upstream) checkPrivileges(ctx context.Context, who string) error {
	h, err := u.readHeld(ctx, who)
	if err != nil {
		return err
	}
	var fixes []string
	var global []string
	for _, p := range globalPrivileges {
		if !h.has("", p, false) {
			global = append(global, p)
		}
	}
	if len(global) > 0 {
		fixes = append(fixes, fmt.Sprintf("GRANT %s ON *.* TO %s;", strings.Join(global, ", "), who))
	}
	// SELECT on the mysql schema: SHOW CREATE USER reads back whether a
	// person user is locked.
	if !h.has("mysql", "SELECT", false) {
		fixes = append(fixes, fmt.Sprintf("GRANT SELECT ON mysql.* TO %s;", who))
	}
	// Every privilege a level role holds, with GRANT OPTION, on every
	// schema: only then may the admin user grant them to the roles.
	for _, schema := range u.schemas {
		var missing []string
		for _, p := range privilegesOf(access.Admin) {
			if !h.has(schema, p, true) {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			fixes = append(fixes, fmt.Sprintf("GRANT %s ON %s.* TO %s WITH GRANT OPTION;", strings.Join(missing, ", "), quoteIdent(schema), who))
		}
	}
	if len(fixes) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s, the admin user of database %s, lacks privileges; as root, run: %s", ErrPrivileges, who, u.cfg.Name, strings.Join(fixes, " "))
}
