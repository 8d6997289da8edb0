package localmysql

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/internal/throwaway"
)

// install creates the data directory with mariadb-install-db. The
// installer always loads the help tables (about a second); the test
// database is skipped. Root gets its password in the same bootstrap run,
// so the server never accepts a password-less root.
func (s *Server) install(ctx context.Context) error {
	extra := filepath.Join(s.Dir, "init.sql")
	if err := os.WriteFile(extra, []byte(rootSQL(s.SuperPassword)), 0o600); err != nil {
		return fmt.Errorf("start mariadb: %w", err)
	}
	defer os.Remove(extra)
	if s.cred != nil {
		if err := throwaway.ChownTree(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("start mariadb: %w", err)
		}
	}
	args := append([]string{
		// --no-defaults must come first: no /etc/mysql option file applies.
		"--no-defaults",
		"--datadir=" + s.dataDir(),
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		// The bootstrap's temporary tables go here rather than to /tmp,
		// where installers running at once trip over each other's.
		"--tmpdir=" + s.Dir,
		"--extra-file=" + extra,
	}, storageArgs()...)
	cmd := s.command(ctx, s.Binaries.InstallDB, args...)
	// The installer would otherwise run the mariadbd it finds itself,
	// which need not be the one Start runs afterwards.
	cmd.Env = append(cmd.Env, "MYSQLD_BOOTSTRAP="+s.Binaries.Server)
	if out, err := cmd.CombinedOutput(); err != nil {
		// The cause comes first; the installer's generic advice follows.
		return fmt.Errorf("%s: %w\n%s", s.Binaries.InstallDB, err, out)
	}
	return nil
}

// rootSQL runs at the end of the bootstrap. The installer's "normal" root
// accounts have no password: give the local ones the password and drop
// root@<hostname>, which skip-name-resolve makes useless. The bootstrap
// runs without grant tables until FLUSH PRIVILEGES loads them; ALTER USER
// needs them. Each statement must stay on one line.
func rootSQL(password string) string {
	return "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1');\n" +
		"DELETE FROM mysql.proxies_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1');\n" +
		"FLUSH PRIVILEGES;\n" +
		fmt.Sprintf("ALTER USER 'root'@'localhost' IDENTIFIED BY '%[1]s', 'root'@'127.0.0.1' IDENTIFIED BY '%[1]s', 'root'@'::1' IDENTIFIED BY '%[1]s';\n", password)
}
