package server

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/store/sqlite"
)

// ManifestFile is the name a backup's manifest has inside it, first.
const ManifestFile = "manifest.json"

// backupFormat is the layout of a backup file; a restore refuses any
// other.
const backupFormat = 1

// Manifest describes a backup: what wrote it, when, the schemas of its
// databases, what they hold, and a checksum of every file, so that a
// restore can prove it restores what was backed up.
type Manifest struct {
	Format  int       `json:"format"`
	Version string    `json:"keygate_version"`
	Created time.Time `json:"created"`
	// Summary is what the copied databases hold: schemas, people,
	// groups, and the newest audit event.
	sqlite.Summary
	Files []BackupFile `json:"files"`
}

// BackupFile is one file of a backup.
type BackupFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Backup writes a backup of the keygate state in dataDir to dst: a
// gzipped tar holding the manifest, a consistent copy of the state and
// audit databases (taken with VACUUM INTO, so a running server keeps
// serving), and data_dir's keys, certificates and credential. dst is
// written beside itself and renamed into place, mode 0600: it holds every
// secret keygate has. version is the running keygate's.
func Backup(ctx context.Context, dataDir, dst, version string) (Manifest, error) {
	storePath := filepath.Join(dataDir, StoreFile)
	if _, err := os.Stat(storePath); errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("no keygate state in %s: check data_dir in the config (keygate server creates it when it first starts)", dataDir)
	} else if err != nil {
		return Manifest{}, fmt.Errorf("back up %s: %w", dataDir, err)
	}
	// The copies are made beside dst, on the disk that must hold the
	// backup anyway, rather than in a temporary directory that may be
	// too small for an audit log.
	scratch, err := os.MkdirTemp(filepath.Dir(dst), ".keygate-backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("back up: %w", err)
	}
	defer os.RemoveAll(scratch)

	stateCopy, auditCopy := filepath.Join(scratch, StoreFile), filepath.Join(scratch, filepath.Base(sqlite.AuditPath(StoreFile)))
	if err := sqlite.Snapshot(ctx, storePath, stateCopy, auditCopy); err != nil {
		return Manifest{}, fmt.Errorf("back up: %w", err)
	}
	sum, err := sqlite.Summarize(ctx, stateCopy, auditCopy)
	if err != nil {
		return Manifest{}, fmt.Errorf("back up: %w", err)
	}
	m := Manifest{Format: backupFormat, Version: version, Created: time.Now().UTC().Truncate(time.Second), Summary: sum}
	names := []string{StoreFile, filepath.Base(auditCopy)}
	others, err := dataFiles(dataDir)
	if err != nil {
		return Manifest{}, fmt.Errorf("back up %s: %w", dataDir, err)
	}
	for _, f := range others {
		if _, err := copyFile(filepath.Join(dataDir, f.name), filepath.Join(scratch, f.name), 0o600); err != nil {
			return Manifest{}, fmt.Errorf("back up: %w", err)
		}
		names = append(names, f.name)
	}
	for _, name := range names {
		bf, err := describe(filepath.Join(scratch, name))
		if err != nil {
			return Manifest{}, fmt.Errorf("back up: %w", err)
		}
		m.Files = append(m.Files, bf)
	}
	if err := writeBackup(dst, scratch, m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// describe is the manifest's line for the file at path.
func describe(path string) (BackupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return BackupFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return BackupFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	return BackupFile{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeBackup writes the manifest and then the files it names, from dir,
// to a new file beside dst (0600, as CreateTemp makes it), and renames
// that to dst once it is synced.
func writeBackup(dst, dir string, m Manifest) (err error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: ManifestFile, Mode: 0o600, Size: int64(len(raw)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if _, err := tw.Write(raw); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	for _, bf := range m.Files {
		if err := addFile(tw, filepath.Join(dir, bf.Name), bf, m.Created); err != nil {
			return fmt.Errorf("write backup: %w", err)
		}
	}
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			return fmt.Errorf("write backup: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, path string, bf BackupFile, at time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: bf.Name, Mode: int64(restoredMode(bf.Name)), Size: bf.Size, ModTime: at, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", bf.Name, err)
	}
	return nil
}

// restoredMode is the mode a file of data_dir is kept at: certificates
// are public, everything else is keygate's alone.
func restoredMode(name string) fs.FileMode {
	if ext := filepath.Ext(name); ext == ".pem" || ext == ".pub" {
		return 0o644
	}
	return 0o600
}

// copyFile copies src to dst, created with mode, and returns its size.
func copyFile(src, dst string, mode fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", src, err)
	}
	return n, nil
}
