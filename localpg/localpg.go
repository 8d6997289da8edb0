// Package localpg starts a throwaway PostgreSQL server from the machine's own
// binaries: initdb into a fresh temporary directory, a free loopback port,
// and removal of everything on Stop. `keygate demo` and the tests use it.
//
// PostgreSQL refuses to run as root; when keygate runs as root, the server
// runs as the "postgres" (or "nobody") system user instead.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/throwaway"
)

// ErrNoBinaries means no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found: install them with `apt-get install postgresql` (Debian package postgresql-15 or newer), or point KEYGATE_PG_BINDIR at their directory")

// FindBinaries returns the directory holding initdb and postgres:
// $KEYGATE_PG_BINDIR, the newest /usr/lib/postgresql/*/bin, or $PATH.
func FindBinaries() (string, error) {
	if d := os.Getenv("KEYGATE_PG_BINDIR"); d != "" {
		if hasServer(d) {
			return d, nil
		}
		return "", fmt.Errorf("KEYGATE_PG_BINDIR=%s holds no initdb and postgres: %w", d, ErrNoBinaries)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// Server is a running throwaway PostgreSQL.
type Server struct {
	Host          string
	Port          int
	SuperUser     string
	SuperPassword string
	// Dir holds the data directory, the socket and the server log.
	Dir    string
	BinDir string
	// Version is "PostgreSQL 15.18".
	Version string

	cmd  *exec.Cmd
	cred *syscall.Credential
	done chan struct{}
	opts Options
}

// Options tune Start.
type Options struct {
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
}

// Start initialises and starts a server. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keygate-pg-")
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &Server{Host: "127.0.0.1", SuperUser: "postgres", SuperPassword: throwaway.RandomHex(16), Dir: dir, BinDir: bin}
	if err := s.init(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.opts = opts
	if err := throwaway.OnFreePort(func() error {
		port, err := throwaway.FreePort()
		if err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		return s.start(ctx, opts, port)
	}, "could not bind"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) init(ctx context.Context) error {
	if os.Geteuid() == 0 {
		cred, err := throwaway.Unprivileged("PostgreSQL", "postgres", "nobody")
		if err != nil {
			return err
		}
		s.cred = cred
	}
	pwfile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.SuperPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if s.cred != nil {
		if err := throwaway.ChownTree(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
	}
	out, err := s.command(ctx, "initdb", "-D", s.dataDir(), "-U", s.SuperUser, "--pwfile", pwfile,
		"--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	if out, err := s.command(ctx, "postgres", "--version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) >= 3 {
			s.Version = "PostgreSQL " + f[2]
		}
	}
	return nil
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// LogFile is the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.Dir, "postgres.log") }

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

func (s *Server) start(ctx context.Context, opts Options, port int) error {
	s.Port = port
	settings := map[string]string{
		"listen_addresses":        s.Host,
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": s.Dir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "200",
		"shared_buffers":          "64MB",
		"log_min_messages":        "warning",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	args := []string{"-D", s.dataDir()}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	logf, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer logf.Close()
	// Not bound to ctx: the server outlives the call that starts it.
	cmd := s.command(context.Background(), "postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If keygate dies, the throwaway server goes with it.
	// SIGQUIT, an immediate shutdown, if keygate dies.
	throwaway.DieWithParent(cmd.SysProcAttr, syscall.SIGQUIT)
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := pgconn.Connect(ctx, s.ConnString("postgres"))
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(s.LogFile())
			return fmt.Errorf("postgres exited during start-up:\n%s", throwaway.Tail(log, 2000))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("postgres did not accept connections within 60s: %w", err)
		}
	}
}

// ConnString is a libpq connection string for the superuser on db.
func (s *Server) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", s.Host, s.Port, s.SuperUser, s.SuperPassword, db)
}

// Address is host:port.
func (s *Server) Address() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Exec runs sql (one or more statements) as the superuser on db.
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	c, err := pgconn.Connect(ctx, s.ConnString(db))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", db, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("exec on %s: %w", db, err)
	}
	return nil
}

// Halt shuts the server down (fast shutdown) and keeps its data, as an
// operator's restart or an outage does; Resume starts it again.
func (s *Server) Halt() {
	if s.cmd != nil && s.cmd.Process != nil {
		throwaway.Stop(s.cmd.Process, s.done, syscall.SIGINT)
	}
}

// Resume starts a halted server again, on the same port and data.
func (s *Server) Resume(ctx context.Context) error {
	return s.start(ctx, s.opts, s.Port)
}

// Stop shuts the server down (fast shutdown, then kill) and removes its
// directory.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		throwaway.Stop(s.cmd.Process, s.done, syscall.SIGINT)
	}
	return os.RemoveAll(s.Dir)
}
