package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A backup file may come from anyone: whatever its manifest and its files
// say, a restore never panics and writes nothing outside the directory it
// restores into.
func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"format": 1, "files": [{"name": "keygate.db", "size": 3, "sha256": "00"}]}`), "keygate.db", []byte("abc"))
	f.Add([]byte(`{"format": 1, "files": [{"name": "../escape", "size": 1, "sha256": "00"}]}`), "../escape", []byte("x"))
	f.Add([]byte(`{"format": 1, "files": [{"name": "token-keys.json", "size": -1, "sha256": ""}]}`), "/etc/passwd", []byte{})
	f.Add([]byte(`{"format": 2}`), "keygate.db-wal", []byte("w"))
	f.Add([]byte(`not json`), "", []byte{})
	f.Fuzz(func(t *testing.T, manifest []byte, name string, content []byte) {
		root := t.TempDir()
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: ManifestFile, Mode: 0o600, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
		tw.Write(manifest)
		if tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(content)), Typeflag: tar.TypeReg}) == nil {
			tw.Write(content)
		}
		tw.Close()
		zw.Close()
		src := filepath.Join(root, "backup.tar.gz")
		if err := os.WriteFile(src, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(root, "data")
		Restore(context.Background(), src, target, false)
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "backup.tar.gz" && e.Name() != "data" {
				t.Errorf("restore wrote %s outside its directory", e.Name())
			}
		}
	})
}
