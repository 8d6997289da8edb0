// Package localmysql starts a throwaway MariaDB server from the machine's
// own binaries: mariadb-install-db into a fresh temporary directory, a free
// loopback port and a unix socket inside that directory, a random root
// password, and removal of everything on Stop. The tests and
// `keygate demo --engine mysql` use it, as they use localpg for PostgreSQL.
//
// mariadbd refuses to run as root; when keygate runs as root, the server
// runs as the "mysql" (or "nobody") system user instead.
package localmysql

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/keygate/keygate/internal/throwaway"
)

// Server is a running throwaway MariaDB.
type Server struct {
	Host string
	Port int
	// Socket is the server's unix socket, inside Dir.
	Socket string
	// SuperUser is "root"; it logs in with SuperPassword over TCP and
	// over the socket.
	SuperUser     string
	SuperPassword string
	// Dir holds the data directory, the socket, the TLS files and the
	// server log.
	Dir      string
	Binaries Binaries

	tls     *serverTLS
	version string
	cmd     *exec.Cmd
	cred    *syscall.Credential
	done    chan struct{}
}

// Options tune Start.
type Options struct {
	// TLS makes the server offer TLS with a certificate for 127.0.0.1 and
	// localhost from a CA of its own (see CA and TLSConfig). Clients may
	// still connect without TLS unless Settings also holds
	// "require-secure-transport": "ON".
	TLS bool
	// Settings are extra mariadbd options (name → value, without the
	// leading "--"); they override Start's defaults.
	Settings map[string]string
}

// Start initialises and starts a server. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keygate-mysql-")
	if err != nil {
		return nil, fmt.Errorf("start mariadb: %w", err)
	}
	s := &Server{
		Host:          "127.0.0.1",
		Socket:        filepath.Join(dir, "mysqld.sock"),
		SuperUser:     "root",
		SuperPassword: throwaway.RandomHex(16),
		Dir:           dir,
		Binaries:      bin,
	}
	if err := s.prepare(ctx, opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := throwaway.OnFreePort(func() error { return s.start(ctx, opts) }, "Bind on TCP/IP port"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// prepare picks the user to run as, writes the TLS files and creates the
// data directory.
func (s *Server) prepare(ctx context.Context, opts Options) error {
	if os.Geteuid() == 0 {
		cred, err := throwaway.Unprivileged("MariaDB", "mysql", "nobody")
		if err != nil {
			return err
		}
		s.cred = cred
	}
	if err := os.Mkdir(s.filesDir(), 0o700); err != nil {
		return fmt.Errorf("start mariadb: %w", err)
	}
	if opts.TLS {
		t, err := newServerTLS(filepath.Join(s.Dir, "tls"))
		if err != nil {
			return err
		}
		s.tls = t
	}
	return s.install(ctx)
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// filesDir is the only directory LOAD DATA INFILE and SELECT … INTO OUTFILE
// may touch (secure_file_priv).
func (s *Server) filesDir() string { return filepath.Join(s.Dir, "files") }

// LogFile is the server's error log.
func (s *Server) LogFile() string { return filepath.Join(s.Dir, "mariadb.log") }

// Version is the server's version, as SELECT VERSION() returns it
// ("10.11.19-MariaDB-0+deb12u1").
func (s *Server) Version() string { return s.version }

// Address is host:port.
func (s *Server) Address() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// command runs a program as the server's user, in Dir: the caller's working
// directory may be closed to that user.
func (s *Server) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// storageArgs are the InnoDB settings of both the installer's bootstrap and
// the server: a small redo log and buffer pool, and no durability, which a
// throwaway server does not need and which makes start-up and tests fast.
func storageArgs() []string {
	return []string{
		"--innodb-log-file-size=8M",
		"--innodb-buffer-pool-size=32M",
		"--innodb-doublewrite=0",
		"--innodb-flush-log-at-trx-commit=0",
	}
}

func (s *Server) start(ctx context.Context, opts Options) error {
	port, err := throwaway.FreePort()
	if err != nil {
		return fmt.Errorf("start mariadb: %w", err)
	}
	s.Port = port
	// Each attempt's log stands alone, so an earlier failure to bind is
	// not mistaken for this one's.
	os.Remove(s.LogFile())
	settings := map[string]string{
		"bind-address":         s.Host,
		"port":                 strconv.Itoa(port),
		"socket":               s.Socket,
		"pid-file":             filepath.Join(s.Dir, "mariadbd.pid"),
		"log-error":            s.LogFile(),
		"tmpdir":               s.Dir,
		"secure-file-priv":     s.filesDir(),
		"skip-name-resolve":    "ON",
		"character-set-server": "utf8mb4",
		"max-connections":      "300",
	}
	if s.tls != nil {
		maps.Copy(settings, s.tls.settings())
	}
	maps.Copy(settings, opts.Settings)
	// --no-defaults must come first: no /etc/mysql option file applies.
	args := append([]string{"--no-defaults", "--datadir=" + s.dataDir()}, storageArgs()...)
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "--"+k+"="+settings[k])
	}
	// Not bound to ctx: the server outlives the call that starts it.
	cmd := s.command(context.Background(), s.Binaries.Server, args...)
	// mariadbd writes to log-error; anything before that goes here.
	var early bytes.Buffer
	cmd.Stdout, cmd.Stderr = &early, &early
	// If keygate dies, the throwaway server goes with it.
	// SIGKILL rather than a clean shutdown if keygate dies: nothing in a
	// throwaway data directory is worth saving.
	throwaway.DieWithParent(cmd.SysProcAttr, syscall.SIGKILL)
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadb: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	return s.waitReady(ctx, &early)
}

// waitReady waits until root can log in over TCP, then reads the version.
func (s *Server) waitReady(ctx context.Context, early *bytes.Buffer) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := s.queryVersion(ctx)
		if err == nil {
			s.version = v
			return nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(s.LogFile())
			return fmt.Errorf("mariadbd exited during start-up (log %s):\n%s%s", s.LogFile(), early.String(), throwaway.Tail(log, 2000))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("mariadbd did not accept connections within 60s (log %s): %w", s.LogFile(), err)
		}
	}
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 10 s) and removes
// its directory.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		throwaway.Stop(s.cmd.Process, s.done, syscall.SIGTERM)
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("stop mariadb: %w", err)
	}
	return nil
}
