package audit

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// logBuffer is a server log a test reads while the log writes to it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openLogTo(t *testing.T, app Appender, w *logBuffer) *Log {
	t.Helper()
	l, err := Open(context.Background(), app, slog.New(slog.NewTextHandler(w, nil)), func() time.Time { return epoch })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkSpill reads a spill file and checks that it holds n events that
// continue the chain after the stored ones, each with a good hash.
func checkSpill(t *testing.T, path string, stored []store.AuditEvent, n int) []store.AuditEvent {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("spill file mode %v, want 0600", fi.Mode().Perm())
	}
	if ok, _ := filepath.Match(SpillPattern, filepath.Base(path)); !ok {
		t.Errorf("spill file %s does not match %s", path, SpillPattern)
	}
	got, err := ReadSpill(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("spill file holds %d events, want %d", len(got), n)
	}
	prev, seq := genesis(""), int64(0)
	if len(stored) > 0 {
		prev, seq = stored[len(stored)-1].Hash, stored[len(stored)-1].ChainSeq
	}
	for _, e := range got {
		if e.ChainSeq != seq+1 || !bytes.Equal(e.PrevHash, prev) || !bytes.Equal(Hash(e), e.Hash) {
			t.Fatalf("spilled event %d does not continue the chain after %d, or its hash is wrong", e.ChainSeq, seq)
		}
		prev, seq = e.Hash, e.ChainSeq
	}
	return got
}

// A store that refuses every write: Shutdown gives up at its deadline and
// writes every event to a spill file, which it names in an ERROR log.
func TestShutdownSpillsWhatTheStoreRefuses(t *testing.T) {
	m := &memStore{failures: 1 << 30}
	var logs logBuffer
	l := openLogTo(t, m, &logs)
	for i := range 5 {
		l.Record(fullEvent(i))
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	path, err := l.Shutdown(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", took)
	}
	if path == "" {
		t.Fatal("no spill file for events the store refused")
	}
	got := checkSpill(t, path, nil, 5)
	if got[4].Query != fullEvent(4).Query || got[0].Detail == nil {
		t.Errorf("spilled events lost content: %+v", got[4])
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "file="+path) || !strings.Contains(out, "events=5") {
		t.Errorf("the log does not name the spill file and count:\n%s", out)
	}
	files, err := SpillFiles(dir)
	if err != nil || len(files) != 1 || files[0] != path {
		t.Errorf("SpillFiles = %v, %v; want [%s]", files, err, path)
	}
	// Recorded after Shutdown: the server log, not a lost event.
	l.Record(Event{Type: Query, User: "late"})
	if !strings.Contains(logs.String(), "audit event after the audit log closed") {
		t.Error("an event after Shutdown left no trace")
	}
}

// Events stored before the store broke stay stored; the spill file
// continues their chain.
func TestShutdownSpillsOnlyWhatIsNotStored(t *testing.T) {
	m := &memStore{}
	l := openLogTo(t, m, &logBuffer{})
	for i := range 3 {
		l.Record(fullEvent(i))
	}
	flush(t, l)
	m.mu.Lock()
	m.failures = 1 << 30
	m.mu.Unlock()
	for i := range 4 {
		l.Record(fullEvent(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	path, err := l.Shutdown(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkSpill(t, path, m.snapshot(), 4)
}

// A store that hangs inside a write, and ignores its context: Shutdown
// still returns soon after its deadline, with the batch the writer is
// stuck on and everything queued behind it in the spill file.
func TestShutdownTakesOverFromAStuckWriter(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	m := &memStore{block: block}
	l := openLogTo(t, m, &logBuffer{})
	l.Record(fullEvent(0))
	time.Sleep(50 * time.Millisecond) // the writer is now inside the store
	for i := 1; i < 10; i++ {
		l.Record(fullEvent(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	path, err := l.Shutdown(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("Shutdown with a stuck store returned after %v", took)
	if took > 200*time.Millisecond+takeOverAfter+time.Second {
		t.Errorf("Shutdown took %v", took)
	}
	checkSpill(t, path, nil, 10)
}

// Shutdown with nothing left to store writes no spill file.
func TestShutdownWithoutFailureSpillsNothing(t *testing.T) {
	m := &memStore{}
	l := openLogTo(t, m, &logBuffer{})
	l.Record(fullEvent(0))
	dir := t.TempDir()
	path, err := l.Shutdown(context.Background(), dir)
	if err != nil || path != "" {
		t.Fatalf("Shutdown = %q, %v; want no spill file", path, err)
	}
	if files, _ := SpillFiles(dir); len(files) != 0 {
		t.Errorf("spill files after a clean shutdown: %v", files)
	}
	if len(m.snapshot()) != 1 {
		t.Error("the event was not stored")
	}
}

// A store that stays broken is logged once at first, not at every retry.
func TestFailingStoreIsLoggedSparingly(t *testing.T) {
	m := &memStore{failures: 1 << 30}
	var logs logBuffer
	l := openLogTo(t, m, &logs)
	l.Record(fullEvent(0))
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Shutdown(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	attempts := m.appends
	m.mu.Unlock()
	if attempts < 4 {
		t.Fatalf("only %d attempts in 2s", attempts)
	}
	if n := strings.Count(logs.String(), "audit write failed"); n != 1 {
		t.Errorf("%d attempts in 2s logged %d times, want once (then every %v)", attempts, n, errorLogEvery)
	}
}
