package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store/sqlite"
)

// dataFile is a file of data_dir besides the databases, with the mode it
// is kept at.
type dataFile struct {
	name string
	mode fs.FileMode
}

// dataFiles lists the files of dir that hold keygate's state besides the
// databases: keys, the admin credential, certificates and audit spill
// files. Keys are private to keygate's user; certificates are public.
func dataFiles(dir string) ([]dataFile, error) {
	var out []dataFile
	for _, f := range []dataFile{{TokenKeysFile, 0o600}, {AdminCredentialFile, 0o600}, {SAMLKeyFile, 0o600}, {AuditPublicKeyFile, 0o644}} {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
			out = append(out, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, p := range []struct {
		pattern string
		mode    fs.FileMode
	}{{"*.key", 0o600}, {"*.pem", 0o644}, {audit.SpillPattern, 0o600}} {
		matches, err := filepath.Glob(filepath.Join(dir, p.pattern))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			name := filepath.Base(m)
			if name == SAMLKeyFile || strings.HasPrefix(name, ".tmp-") {
				continue
			}
			out = append(out, dataFile{name, p.mode})
		}
	}
	slices.SortFunc(out, func(a, b dataFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// databaseFiles are the names of the SQLite files of the store, with the
// journals SQLite keeps beside them.
func databaseFiles() []string {
	var out []string
	for _, db := range []string{StoreFile, filepath.Base(sqlite.AuditPath(StoreFile))} {
		out = append(out, db, db+"-wal", db+"-shm")
	}
	return out
}

// prepareDataDir creates dir (0700) and makes the state in it private to
// keygate's user: a data_dir copied with a loose umask, or written by an
// older keygate, is tightened, and each change logged. SQLite gives its
// -wal and -shm files the mode of the database, so the databases are
// created 0600 before SQLite first opens them; sqliteState is false when
// the state is in a shared database, and no SQLite file is made.
func prepareDataDir(dir string, sqliteState bool, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	if err := tighten(log, dir, 0o700); err != nil {
		return err
	}
	if sqliteState {
		for _, name := range []string{StoreFile, filepath.Base(sqlite.AuditPath(StoreFile))} {
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|os.O_CREATE, 0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			f.Close()
		}
	}
	var files []dataFile
	for _, name := range append(databaseFiles(), LockFile) {
		files = append(files, dataFile{name, 0o600})
	}
	others, err := dataFiles(dir)
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	for _, f := range append(files, others...) {
		if err := tighten(log, filepath.Join(dir, f.name), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// tighten removes from path's mode whatever mode does not allow. A
// missing file is left missing.
func tighten(log *slog.Logger, path string, mode fs.FileMode) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check mode of %s: %w", path, err)
	}
	have := fi.Mode().Perm()
	if have&^mode == 0 || fi.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	if err := os.Chmod(path, have&mode); err != nil {
		return fmt.Errorf("restrict %s to mode %v: %w (fix it by hand, or run keygate as its owner)", path, have&mode, err)
	}
	log.Info("restricted a data_dir file that others could read", "file", path, "was", have, "now", have&mode)
	return nil
}

// warnSpills names the audit spill files an earlier shutdown left, which
// hold events the audit store could not take: they are not in the chain,
// and nothing reads them back by itself.
func warnSpills(dir string, log *slog.Logger) {
	files, err := audit.SpillFiles(dir)
	if err != nil || len(files) == 0 {
		return
	}
	log.Warn("audit events that an earlier shutdown could not store are kept in spill files, outside the audit log's chain; keep them with the audit records",
		"files", files)
}
