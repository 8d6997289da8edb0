package server

import (
	"archive/tar"
	"bytes"
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
	"slices"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store/sqlite"
)

// restoreTmp is the directory in data_dir a restore unpacks into before
// it moves the files into place.
const restoreTmp = ".restore-tmp"

// RestoreResult is what Restore put in place.
type RestoreResult struct {
	Manifest Manifest
	// Replaced names the files of data_dir that --force replaced or
	// removed.
	Replaced []string
}

// Restore unpacks the backup at src into dir, a data_dir no server runs
// on, and checks it before anything of dir changes: every file against
// the manifest's checksum, the schemas against what this keygate knows,
// and the audit log's hash chain. Only then are the files moved into
// place, each with a rename. A dir that holds anything is refused unless
// force, which replaces keygate's files in it.
func Restore(ctx context.Context, src, dir string, force bool) (RestoreResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: create %s: %w", dir, err)
	}
	lock, err := AcquireLock(dir, "state restore")
	if err != nil {
		var inUse *InUseError
		if errors.As(err, &inUse) {
			return RestoreResult{}, fmt.Errorf("%w: stop it before restoring into its data_dir, or restore into another directory", err)
		}
		return RestoreResult{}, err
	}
	defer lock.Release()
	present, err := occupants(dir)
	if err != nil {
		return RestoreResult{}, err
	}
	if len(present) > 0 && !force {
		return RestoreResult{}, fmt.Errorf("%s is not empty (it holds %s): restore into an empty directory, or pass --force to replace the keygate state in it",
			dir, listSome(present))
	}

	tmp := filepath.Join(dir, restoreTmp)
	if err := os.RemoveAll(tmp); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := unpack(src, tmp)
	if err != nil {
		return RestoreResult{}, err
	}
	if err := checkRestored(ctx, src, tmp, m); err != nil {
		return RestoreResult{}, err
	}
	replaced, err := install(dir, tmp, m, force)
	if err != nil {
		return RestoreResult{}, err
	}
	return RestoreResult{Manifest: m, Replaced: replaced}, nil
}

// occupants are the names in dir other than the lock and an earlier
// restore's leftovers.
func occupants(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != LockFile && e.Name() != restoreTmp {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func listSome(names []string) string {
	if len(names) > 4 {
		return strings.Join(names[:4], ", ") + fmt.Sprintf(" and %d more", len(names)-4)
	}
	return strings.Join(names, ", ")
}

// unpack reads the backup at src into dir, checking each file against
// the manifest, and returns the manifest. It refuses anything the
// manifest does not name and a backup from a keygate with a newer schema.
func unpack(src, dir string) (Manifest, error) {
	f, err := os.Open(src)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s is not a keygate backup (%w): keygate state backup FILE writes one", src, err)
	}
	tr := tar.NewReader(zr)
	m, err := readManifest(src, tr)
	if err != nil {
		return Manifest{}, err
	}
	want := map[string]BackupFile{}
	for _, bf := range m.Files {
		if !backupName(bf.Name) {
			return Manifest{}, fmt.Errorf("backup %s names the file %q, which a data_dir does not hold: the backup is damaged or not keygate's", src, bf.Name)
		}
		want[bf.Name] = bf
	}
	for _, name := range []string{StoreFile, filepath.Base(sqlite.AuditPath(StoreFile))} {
		if _, ok := want[name]; !ok {
			return Manifest{}, fmt.Errorf("backup %s holds no %s: the backup is damaged or not keygate's", src, name)
		}
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("read backup %s: %w: the file is damaged or incomplete", src, err)
		}
		bf, ok := want[hdr.Name]
		if !ok || hdr.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("backup %s holds %q, which its manifest does not list (or lists twice): the backup is damaged or not keygate's", src, hdr.Name)
		}
		delete(want, hdr.Name)
		if err := extract(tr, filepath.Join(dir, bf.Name), bf); err != nil {
			return Manifest{}, fmt.Errorf("backup %s: %w", src, err)
		}
	}
	if len(want) > 0 {
		var missing []string
		for name := range want {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return Manifest{}, fmt.Errorf("backup %s lacks %s, which its manifest lists: the file is incomplete", src, strings.Join(missing, ", "))
	}
	return m, nil
}

// readManifest reads the manifest, the backup's first entry, and refuses
// a backup this keygate cannot restore.
func readManifest(src string, tr *tar.Reader) (Manifest, error) {
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ManifestFile {
		return Manifest{}, fmt.Errorf("%s is not a keygate backup (it does not start with %s): keygate state backup FILE writes one", src, ManifestFile)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("backup %s: read %s: %w", src, ManifestFile, err)
	}
	if m.Format != backupFormat {
		return Manifest{}, fmt.Errorf("backup %s has format %d, which this keygate does not know (it knows %d): restore it with the keygate that wrote it (%s) or newer",
			src, m.Format, backupFormat, m.Version)
	}
	if err := newerSchema(m.Schemas, "backup "+src+" was taken by keygate "+m.Version); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// newerSchema refuses schemas newer than this keygate's: it cannot know
// what they hold, and a server of this version would refuse them anyway.
func newerSchema(have sqlite.Schemas, what string) error {
	known := sqlite.KnownSchemas()
	if have.State > known.State || have.Audit > known.Audit {
		return fmt.Errorf("%s, whose databases are newer (schema state %d, audit %d) than this keygate knows (state %d, audit %d): restore it with that version or newer",
			what, have.State, have.Audit, known.State, known.Audit)
	}
	return nil
}

// backupName reports whether name is one a backup may hold: the two
// databases (never their journals, which SQLite would replay onto them)
// and the files dataFiles lists.
func backupName(name string) bool {
	switch name {
	case StoreFile, filepath.Base(sqlite.AuditPath(StoreFile)), TokenKeysFile, AdminCredentialFile, SAMLKeyFile, AuditPublicKeyFile:
		return true
	}
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return false
	}
	for _, pattern := range []string{"*.key", "*.pem", audit.SpillPattern} {
		if ok, _ := filepath.Match(pattern, name); ok {
			return true
		}
	}
	return false
}

// extract writes one file of the backup to path, with the mode data_dir
// keeps it at, and checks its size and checksum.
func extract(r io.Reader, path string, bf BackupFile) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, restoredMode(bf.Name))
	if err != nil {
		return fmt.Errorf("extract %s: %w", bf.Name, err)
	}
	h := sha256.New()
	// One byte past the size is enough to tell it is wrong: a crafted
	// backup must not fill the disk before its checksum is looked at.
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, bf.Size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", bf.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != bf.Size || got != bf.SHA256 {
		return fmt.Errorf("%s does not match its checksum in the manifest (%d bytes, sha256 %s; manifest: %d bytes, sha256 %s): the backup is damaged; use another",
			bf.Name, n, got, bf.Size, bf.SHA256)
	}
	return nil
}

// checkRestored checks the unpacked databases themselves: their schemas,
// that they hold what the manifest says, and the audit log's hash chain
// up to the event the manifest names.
func checkRestored(ctx context.Context, src, dir string, m Manifest) error {
	statePath := filepath.Join(dir, StoreFile)
	sum, err := sqlite.Summarize(ctx, statePath, sqlite.AuditPath(statePath))
	if err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	if err := newerSchema(sum.Schemas, "backup "+src+" holds databases written by a newer keygate"); err != nil {
		return err
	}
	if sum.Schemas != m.Schemas || sum.People != m.People || sum.Groups != m.Groups || sum.AuditLastSeq != m.AuditLastSeq ||
		!bytes.Equal(sum.AuditLastHash, m.AuditLastHash) {
		return fmt.Errorf("backup %s: its databases do not hold what its manifest says (%d people, %d groups, %d audit events; manifest: %d, %d, %d): the backup is damaged; use another",
			src, sum.People, sum.Groups, sum.AuditLastSeq, m.People, m.Groups, m.AuditLastSeq)
	}
	n, err := verifyChain(ctx, statePath, sum.Schemas)
	if err != nil {
		return fmt.Errorf("backup %s: %w: the audit log in it was changed after it was written; keep the backup as evidence and restore another", src, err)
	}
	if n != m.AuditLastSeq {
		return fmt.Errorf("backup %s: its audit log's chain ends at event %d, its manifest at %d: the backup is damaged; use another", src, n, m.AuditLastSeq)
	}
	return nil
}

// verifyChain checks the audit log beside the store at statePath as
// keygate audit verify does. A store of an older schema is read from a
// migrated scratch copy, since this keygate reads only its own schema;
// the files to restore stay as they were backed up.
func verifyChain(ctx context.Context, statePath string, have sqlite.Schemas) (int64, error) {
	if have != sqlite.KnownSchemas() {
		scratch := filepath.Join(filepath.Dir(statePath), ".verify")
		if err := os.Mkdir(scratch, 0o700); err != nil {
			return 0, err
		}
		defer os.RemoveAll(scratch)
		copyPath := filepath.Join(scratch, StoreFile)
		for _, c := range [][2]string{{statePath, copyPath}, {sqlite.AuditPath(statePath), sqlite.AuditPath(copyPath)}} {
			if _, err := copyFile(c[0], c[1], 0o600); err != nil {
				return 0, err
			}
		}
		st, err := sqlite.Open(ctx, copyPath, nil)
		if err != nil {
			return 0, err
		}
		defer st.Close()
		return audit.Verify(ctx, st)
	}
	ro, err := sqlite.OpenReadOnly(ctx, statePath)
	if err != nil {
		return 0, err
	}
	defer ro.Close()
	return audit.Verify(ctx, ro)
}

// install moves the checked files from tmp into dir. With force, the
// databases' journals in dir go first, since SQLite would replay a
// stale WAL onto the restored database, and so do data_dir files the
// backup does not hold, which belong to the state being replaced.
func install(dir, tmp string, m Manifest, force bool) ([]string, error) {
	var replaced []string
	if force {
		keep := map[string]bool{}
		for _, bf := range m.Files {
			keep[bf.Name] = true
		}
		others, err := dataFiles(dir)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		stale := databaseFiles()
		for _, f := range others {
			stale = append(stale, f.name)
		}
		for _, name := range stale {
			if keep[name] {
				if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
					replaced = append(replaced, name)
				}
				continue
			}
			err := os.Remove(filepath.Join(dir, name))
			if err == nil {
				replaced = append(replaced, name)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("restore: remove %s: %w", name, err)
			}
		}
	}
	for _, bf := range m.Files {
		if err := os.Rename(filepath.Join(tmp, bf.Name), filepath.Join(dir, bf.Name)); err != nil {
			return nil, fmt.Errorf("restore: move %s into place: %w (data_dir %s is now partly restored: run the restore again with --force)", bf.Name, err, dir)
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	slices.Sort(replaced)
	return slices.Compact(replaced), nil
}
