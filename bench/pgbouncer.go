package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/localpg"
)

// pgbouncerIni is pgbouncer set up the way keygate is: session pooling
// (one upstream connection per client connection); TLS towards the client,
// which sends its password in clear inside it, as keygate's clients send
// their token; plaintext on loopback towards PostgreSQL, like keygate's
// `tls: disable`. Logging is left at its defaults, as keygate's is.
const pgbouncerIni = `[databases]
%[1]s = host=%[2]s port=%[3]d dbname=%[1]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = plain
auth_file = %[5]s
pool_mode = session
default_pool_size = %[6]d
max_client_conn = %[7]d
client_tls_sslmode = require
client_tls_cert_file = %[8]s
client_tls_key_file = %[9]s
server_tls_sslmode = disable
`

// findPgbouncer returns the pgbouncer binary, or why there is none.
func findPgbouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	// Debian installs it in /usr/sbin, which a normal user's PATH may lack.
	const debian = "/usr/sbin/pgbouncer"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("pgbouncer is not installed (bench/run.sh installs it with apt-get install pgbouncer)")
}

// pgbouncer is a running pgbouncer with its own directory.
type pgbouncer struct {
	*proc.Process
	dir  string
	port int
}

// startPgbouncer starts bin in front of pg for user with password, with
// client TLS from pkiDir and a pool that holds clients connections without
// queueing. PgBouncer will not run as root: then it runs as the user that
// PostgreSQL runs as, and its files belong to that user.
func startPgbouncer(ctx context.Context, bin string, pg *localpg.Server, pkiDir, user, password string, clients int) (_ *pgbouncer, err error) {
	dir, err := os.MkdirTemp("", "keygate-bench-pgbouncer-")
	if err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	uid, gid := os.Geteuid(), os.Getegid()
	var cred *syscall.Credential
	if uid == 0 {
		if uid, gid, err = ownerOf(pg.Dir); err != nil {
			return nil, fmt.Errorf("start pgbouncer: %w", err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	port, err := throwaway.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := copyFile(filepath.Join(pkiDir, "server.pem"), cert, 0o644, uid, gid); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	if err := copyFile(filepath.Join(pkiDir, "server.key"), key, 0o600, uid, gid); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	authFile := filepath.Join(dir, "userlist.txt")
	if err := writeOwned(authFile, []byte(authQuote(user)+" "+authQuote(password)+"\n"), 0o600, uid, gid); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	text := fmt.Sprintf(pgbouncerIni, benchDB, pg.Host, pg.Port, port, authFile, clients+2, clients+20, cert, key)
	if err := writeOwned(ini, []byte(text), 0o600, uid, gid); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	p, err := proc.Start("pgbouncer", exec.Command(bin, ini), filepath.Join(dir, "pgbouncer.log"), cred)
	if err != nil {
		return nil, err
	}
	b := &pgbouncer{Process: p, dir: dir, port: port}
	if err := b.waitListening(ctx); err != nil {
		p.Stop(stopGrace)
		return nil, err
	}
	return b, nil
}

func (b *pgbouncer) waitListening(ctx context.Context) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, err := b.Exited(); done {
			return fmt.Errorf("pgbouncer exited during start-up (%v):\n%s", err, b.LogTail())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgbouncer not listening on %s after 10s: %w\n%s", addr, err, b.LogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close stops pgbouncer and removes its directory.
func (b *pgbouncer) close() error {
	err := b.Stop(stopGrace)
	if rerr := os.RemoveAll(b.dir); rerr != nil && err == nil {
		err = fmt.Errorf("remove pgbouncer directory: %w", rerr)
	}
	return err
}

// authQuote quotes s for pgbouncer's auth_file, where a double quote inside
// the quotes is written twice.
func authQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
