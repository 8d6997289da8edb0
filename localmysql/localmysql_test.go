package localmysql

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	began := time.Now()
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MariaDB %s started in %.2fs on %s", s.Version(), time.Since(began).Seconds(), s.Address())
	t.Cleanup(func() { s.Stop() })
	return s
}

func openDB(t *testing.T, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStartUseStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := start(t, Options{})
	if !strings.Contains(s.Version(), "MariaDB") {
		t.Errorf("Version() = %q, want a MariaDB version", s.Version())
	}

	db := openDB(t, s.Config(""))
	for _, q := range []string{
		"CREATE DATABASE orders",
		"CREATE TABLE orders.items (id INT PRIMARY KEY, name VARCHAR(40))",
		"INSERT INTO orders.items VALUES (1, 'tea'), (2, 'ünïcode')",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM orders.items WHERE id = ?", 2).Scan(&name); err != nil || name != "ünïcode" {
		t.Fatalf("SELECT = %q, %v; want ünïcode", name, err)
	}

	if err := s.Exec(ctx, "orders", "INSERT INTO items VALUES (3, 'a'); INSERT INTO items VALUES (4, NULL)"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Query(ctx, "orders", "SELECT id, name FROM items WHERE id >= ? ORDER BY id", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(flatten(rows), ","); got != "3,a,4," {
		t.Fatalf("Query rows = %v, want [[3 a] [4 ]]", rows)
	}
	if err := s.Exec(ctx, "orders", "INSERT INTO items VALUES (1, 'duplicate')"); err == nil {
		t.Fatal("Exec of a failing statement returned no error")
	}

	// Root also logs in over the unix socket, with the same password.
	sock := s.Config("orders")
	sock.Net, sock.Addr = "unix", s.Socket
	sockDB := openDB(t, sock)
	if err := sockDB.PingContext(ctx); err != nil {
		t.Fatalf("root over the socket: %v", err)
	}
	db.Close()
	sockDB.Close()

	dir, addr := s.Dir, s.Address()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after Stop", dir)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still answers after Stop", addr)
	}
}

func flatten(rows [][]string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// Root's accounts all need the random password: the installer's
// password-less root and root@<hostname> must be gone.
func TestRootNeedsThePassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := start(t, Options{})
	for _, net := range []string{"tcp", "unix"} {
		cfg := s.Config("")
		cfg.Passwd = ""
		if net == "unix" {
			cfg.Net, cfg.Addr = "unix", s.Socket
		}
		var me *mysql.MySQLError
		if err := openDB(t, cfg).PingContext(ctx); !errors.As(err, &me) || me.Number != 1045 {
			t.Errorf("root without password over %s: %v, want access denied (1045)", net, err)
		}
	}
	rows, err := s.Query(ctx, "", "SELECT Host FROM mysql.global_priv WHERE User = 'root' ORDER BY Host")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(flatten(rows), " "); got != "127.0.0.1 ::1 localhost" {
		t.Errorf("root accounts = %s, want 127.0.0.1 ::1 localhost", got)
	}
	rows, err = s.Query(ctx, "", "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'")
	if err != nil || rows[0][0] != "0" {
		t.Errorf("test database present: %v %v", rows, err)
	}
}

// As root, the server runs as an unprivileged user; mariadbd would refuse
// root anyway, so this checks the user it got.
func TestRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful when the tests run as root")
	}
	t.Parallel()
	s := start(t, Options{})
	status, err := os.ReadFile("/proc/" + pidOf(t, s.Dir) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
			t.Fatalf("mariadbd runs as root: %s", line)
		}
	}
}

func pidOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(dir + "/mariadbd.pid")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTwoServersAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type result struct {
		s   *Server
		err error
	}
	ch := make(chan result, 2)
	for range 2 {
		go func() {
			s, err := Start(ctx, Options{Settings: map[string]string{"max-connections": "17"}})
			ch <- result{s, err}
		}()
	}
	var servers []*Server
	for range 2 {
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.s.Stop() })
		servers = append(servers, r.s)
	}
	a, b := servers[0], servers[1]
	if a.Port == b.Port || a.Dir == b.Dir {
		t.Fatalf("both servers share %s / %s", a.Address(), a.Dir)
	}
	if err := a.Exec(ctx, "", "CREATE DATABASE only_in_a"); err != nil {
		t.Fatal(err)
	}
	rows, err := b.Query(ctx, "", "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'only_in_a'")
	if err != nil || rows[0][0] != "0" {
		t.Fatalf("second server sees the first's database: %v %v", rows, err)
	}
	for _, s := range servers {
		rows, err := s.Query(ctx, "", "SELECT @@max_connections")
		if err != nil || rows[0][0] != "17" {
			t.Errorf("%s: max_connections = %v %v, want the setting 17", s.Address(), rows, err)
		}
	}
}

func TestMissingBinariesNamesThePackage(t *testing.T) {
	t.Setenv("KEYGATE_MYSQL_BINDIR", t.TempDir())
	_, err := Start(context.Background(), Options{})
	if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "apt-get install mariadb-server") || !strings.Contains(err.Error(), "KEYGATE_MYSQL_BINDIR") {
		t.Fatalf("error = %v, want one naming the Debian package and KEYGATE_MYSQL_BINDIR", err)
	}
}
