package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockFile in data_dir is held, with an exclusive flock, by the process
// that uses the directory: a server, or a restore into it. Two servers on
// one data_dir would write one audit chain from two places and break it.
// The kernel releases the lock when the process ends, however it ends, so
// a lock file left behind by a killed server holds no lock and its text
// is ignored.
const LockFile = "keygate.lock"

// Holder is what the process holding a data_dir's lock wrote into it.
type Holder struct {
	PID int `json:"pid"`
	// What is the command: "server" or "state restore".
	What     string    `json:"what"`
	API      string    `json:"api,omitempty"`
	Postgres string    `json:"postgres,omitempty"`
	MySQL    string    `json:"mysql,omitempty"`
	Metrics  string    `json:"metrics,omitempty"`
	Since    time.Time `json:"since"`
}

// String describes the holder for a person: "keygate server pid 1234
// (api 127.0.0.1:8443, postgres 127.0.0.1:5433, since …)".
func (h Holder) String() string {
	what := h.What
	if what == "" {
		what = "process"
	}
	var parts []string
	for _, p := range []struct{ name, addr string }{{"api", h.API}, {"postgres", h.Postgres}, {"mysql", h.MySQL}, {"metrics", h.Metrics}} {
		if p.addr != "" {
			parts = append(parts, p.name+" "+p.addr)
		}
	}
	if !h.Since.IsZero() {
		parts = append(parts, "since "+h.Since.UTC().Format(time.RFC3339))
	}
	pid := "pid unknown"
	if h.PID != 0 {
		pid = fmt.Sprintf("pid %d", h.PID)
	}
	s := fmt.Sprintf("keygate %s %s", what, pid)
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// InUseError says that another process holds a data_dir's lock.
type InUseError struct {
	Dir    string
	Holder Holder
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("data_dir %s is in use by %s", e.Dir, e.Holder)
}

// Lock is a held data_dir lock. Release it with Release, or let the
// process end.
type Lock struct {
	f      *os.File
	holder Holder
}

// lockRetry is how long AcquireLock tries before it reports the directory
// in use: Running takes the lock for an instant to look, and a server
// starting at that instant must not fail for it.
const lockRetry = 200 * time.Millisecond

// AcquireLock takes dir's lock for what ("server", "state restore"),
// without waiting for a holder to let go, and writes the holder into it.
// A held lock is an *InUseError naming the holder.
func AcquireLock(dir, what string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data_dir: %w", err)
	}
	deadline := time.Now().Add(lockRetry)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		h, _ := readHolder(f)
		f.Close()
		return nil, &InUseError{Dir: dir, Holder: h}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data_dir %s: %w", dir, err)
	}
	// An older file may be looser; the lock is as private as the rest.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data_dir: %w", err)
	}
	l := &Lock{f: f, holder: Holder{PID: os.Getpid(), What: what, Since: time.Now().UTC().Truncate(time.Second)}}
	if err := l.write(); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// SetAddrs records the addresses the holder listens on, once bound: those
// of addrs, whose other fields are ignored.
func (l *Lock) SetAddrs(addrs Holder) error {
	l.holder.API, l.holder.Postgres, l.holder.MySQL, l.holder.Metrics = addrs.API, addrs.Postgres, addrs.MySQL, addrs.Metrics
	return l.write()
}

func (l *Lock) write() error {
	raw, err := json.Marshal(l.holder)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	if _, err := l.f.WriteAt(append(raw, '\n'), 0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	return nil
}

// Release lets the lock go. The file stays: removing it would let a
// process that opened it before the removal lock a file nobody else sees.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

func readHolder(f *os.File) (Holder, error) {
	raw, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil {
		return Holder{}, err
	}
	var h Holder
	err = json.Unmarshal(raw, &h)
	return h, err
}

// Running reports whether a process holds dir's lock, and what it wrote
// there: "is a server running on this data_dir, and where". It takes the
// lock for an instant to look; a directory without a lock file has no
// holder.
func Running(dir string) (Holder, bool, error) {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if errors.Is(err, os.ErrNotExist) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("look for a server on %s: %w", dir, err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		// Nobody held it: the text is a stale holder's. Closing releases.
		return Holder{}, false, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return Holder{}, false, fmt.Errorf("look for a server on %s: %w", dir, err)
	}
	h, _ := readHolder(f)
	return h, true, nil
}
