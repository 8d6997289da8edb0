package mysql

import (
	"context"
	"fmt"
	"strings"

	"github.com/keygate/keygate/access"
)

// levelPrivileges are what each level's role holds on every configured
// schema, each level adding to the one below.
//
//   - ro reads: SELECT, and SHOW VIEW so that tools can show a view's
//     definition. Not EXECUTE: a routine with SQL SECURITY DEFINER runs
//     with its definer's privileges and could write on ro's behalf. Not
//     LOCK TABLES: a read lock held by a reader stalls every writer.
//   - rw writes rows: INSERT, UPDATE, DELETE; CREATE TEMPORARY TABLES for
//     the scratch tables reports and migrations use; LOCK TABLES for
//     consistent multi-table changes and dumps; EXECUTE to call the
//     application's routines.
//   - admin changes the schema: CREATE, ALTER, DROP, INDEX, REFERENCES,
//     CREATE VIEW, TRIGGER.
//
// No level gets FILE, SUPER, CREATE USER, GRANT OPTION or any privilege
// outside the configured schemas.
var levelPrivileges = map[access.Level][]string{
	access.ReadOnly:  {"SELECT", "SHOW VIEW"},
	access.ReadWrite: {"INSERT", "UPDATE", "DELETE", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE"},
	access.Admin:     {"CREATE", "ALTER", "DROP", "INDEX", "REFERENCES", "CREATE VIEW", "TRIGGER"},
}

// privilegesOf is every privilege a level's role holds on a schema.
func privilegesOf(level access.Level) []string {
	var out []string
	for _, l := range access.Levels {
		out = append(out, levelPrivileges[l]...)
		if l == level {
			break
		}
	}
	return out
}

// RoleName is the role holding level's privileges on this database.
func (u *Upstream) RoleName(level access.Level) string { return RoleName(u.cfg.Name, level) }

// SetRoleStatement is the statement a person's session runs first, right
// after login, to take up its level's privileges (person users have no
// default role; see the package comment).
func (u *Upstream) SetRoleStatement(level access.Level) string {
	return "SET ROLE " + quoteIdent(u.RoleName(level))
}

// SessionStart is what a person's session at level runs right after
// login, in order: take up the level's role, then enter the database's
// first schema.
func (u *Upstream) SessionStart(level access.Level) []string {
	return []string{u.SetRoleStatement(level), "USE " + quoteIdent(u.schemas[0])}
}

// ensureRoles creates the level roles and grants them their privileges on
// every schema. Both statements are idempotent, so it runs on every Check.
// A privilege granted to a role by hand beyond its level's is not revoked.
func (u *Upstream) ensureRoles(ctx context.Context) error {
	for _, level := range access.Levels {
		role := quoteIdent(u.RoleName(level))
		if err := u.exec(ctx, "create role "+u.RoleName(level), "CREATE ROLE IF NOT EXISTS "+role); err != nil {
			return err
		}
		for _, schema := range u.schemas {
			grant := fmt.Sprintf("GRANT %s ON %s.* TO %s", strings.Join(privilegesOf(level), ", "), quoteIdent(schema), role)
			if err := u.exec(ctx, "grant to role "+u.RoleName(level), grant); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensurePerson creates user, locked with a password nobody knows, and
// grants it its level's role (without ADMIN OPTION: it cannot pass the
// role on). An existing user of that name is taken as keygate's: it is
// granted the role, and the login window re-passwords and re-locks it;
// other privileges or roles it holds are not revoked.
func (u *Upstream) ensurePerson(ctx context.Context, person, user string, level access.Level) error {
	hash, err := randomHash()
	if err != nil {
		return fmt.Errorf("create user %q: %w", user, err)
	}
	acct := account(user)
	stmts := []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS %s IDENTIFIED BY PASSWORD %s ACCOUNT LOCK", acct, quoteString(hash)),
		fmt.Sprintf("GRANT %s TO %s", quoteIdent(u.RoleName(level)), acct),
	}
	for _, s := range stmts {
		if err := u.exec(ctx, "set up user "+user, s); err != nil {
			return err
		}
	}
	u.server.known(user, person)
	return nil
}
