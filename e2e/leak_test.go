package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// h. No token issued during a run — used, refused, expired, tampered,
// pasted into the wrong field — appears in the server's log (at debug level)
// or anywhere in its data directory, audit store included.
func TestTokensNeverLeak(t *testing.T) {
	s := startServer(t, "leak", "log:\n  level: debug\n", true)
	s.addUser(t, "hal", "analysts")
	s.addUser(t, "ike", "engineers", "blinkers")

	hal := s.token(t, "hal", "orders")
	if r := s.psql(t, s.connString("hal", "orders"), hal, "SELECT count(*) FROM orders"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	ike := s.token(t, "ike", "orders", "--access", "rw")
	if r := s.psql(t, s.connString("ike", "orders"), ike, "INSERT INTO orders (customer_id, amount) VALUES (1, 5)"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	short := s.token(t, "ike", "orders", "--access", "ro")

	refusals := []struct{ conn, password string }{
		{s.connString("ike", "orders"), hal},                                               // another person's token
		{s.connString("hal", "billing"), hal},                                              // another database
		{s.connString(hal, "orders"), hal},                                                 // token pasted as the user name
		{s.connString("hal", "orders"), hal[:len(hal)-3] + "AAA"},                          // tampered
		{strings.Replace(s.connString("hal", "orders"), "verify-full", "disable", 1), hal}, // plaintext
	}
	for _, r := range refusals {
		if res := s.psql(t, r.conn, r.password, "SELECT 1"); res.code == 0 {
			t.Fatalf("connection %q succeeded", r.conn)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if res := s.psql(t, s.connString("ike", "orders"), short, "SELECT 1"); !strings.Contains(res.stderr, "expired") {
		t.Fatalf("short-lived token: %s", res.stderr)
	}
	s.kg(t, 0, "admin", "user", "disable", "hal")
	if res := s.psql(t, s.connString("hal", "orders"), hal, "SELECT 1"); res.code == 0 {
		t.Fatal("disabled hal connected")
	}
	if len(s.audit(t, "--type", "connect.refused")) < len(refusals)+2 {
		t.Fatal("refusals were not audited")
	}

	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("server log:\n%s", b)
		}
	})
	// Stop the server so everything is flushed to disk, then look.
	s.stop(t)
	files := map[string][]byte{}
	log, err := os.ReadFile(s.logPath)
	if err != nil || len(log) == 0 {
		t.Fatalf("server log: %v (%d bytes)", err, len(log))
	}
	files[s.logPath] = log
	filepath.Walk(filepath.Join(s.dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			files[p] = b
		}
		return nil
	})
	for _, name := range []string{"keygate.db", "keygate-audit.db"} {
		if _, ok := files[filepath.Join(s.dir, "data", name)]; !ok {
			t.Fatalf("%s not found among %d files", name, len(files))
		}
	}
	s.mu.Lock()
	tokens := append([]string(nil), s.tokens...)
	s.mu.Unlock()
	if len(tokens) < 3 {
		t.Fatalf("only %d tokens issued", len(tokens))
	}
	for _, tok := range tokens {
		// The payload segment is what makes a token unique; finding it
		// anywhere means the token leaked, whole or in part.
		payload := strings.Split(tok, ".")[2]
		for path, b := range files {
			if bytes.Contains(b, []byte(payload)) {
				t.Errorf("a token's payload appears in %s", path)
			}
		}
	}
}
