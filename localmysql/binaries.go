package localmysql

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNoBinaries means no MariaDB server binaries were found.
var ErrNoBinaries = errors.New("MariaDB server binaries (mariadbd, mariadb-install-db) not found: install them with `apt-get install mariadb-server` (Debian's MariaDB 10.11 or newer), or point KEYGATE_MYSQL_BINDIR at the directories holding them (a list like $PATH)")

// Binaries are the programs Start runs.
type Binaries struct {
	// Server is mariadbd (or mysqld when that is MariaDB's only name).
	Server string
	// InstallDB is mariadb-install-db (or mysql_install_db), which
	// creates the system tables in a new data directory.
	InstallDB string
}

// Debian puts the server in /usr/sbin and the installer in /usr/bin, so
// both are searched by default, before $PATH.
var defaultDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}

// FindBinaries locates the server and its installer in the directories of
// $KEYGATE_MYSQL_BINDIR when it is set, and otherwise in the usual system
// directories and $PATH.
func FindBinaries() (Binaries, error) {
	if list := os.Getenv("KEYGATE_MYSQL_BINDIR"); list != "" {
		b, ok := findIn(filepath.SplitList(list))
		if !ok {
			return Binaries{}, fmt.Errorf("KEYGATE_MYSQL_BINDIR=%s holds no mariadbd and mariadb-install-db: %w", list, ErrNoBinaries)
		}
		return b, nil
	}
	b, ok := findIn(append(defaultDirs, filepath.SplitList(os.Getenv("PATH"))...))
	if !ok {
		return Binaries{}, ErrNoBinaries
	}
	return b, nil
}

func findIn(dirs []string) (Binaries, bool) {
	var b Binaries
	for _, d := range dirs {
		if b.Server == "" {
			b.Server = firstExecutable(d, "mariadbd", "mysqld")
		}
		if b.InstallDB == "" {
			b.InstallDB = firstExecutable(d, "mariadb-install-db", "mysql_install_db")
		}
	}
	return b, b.Server != "" && b.InstallDB != ""
}

func firstExecutable(dir string, names ...string) string {
	if dir == "" {
		return ""
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
