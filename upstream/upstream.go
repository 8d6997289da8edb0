// Package upstream is what keygate needs of an upstream database, whatever
// its engine. Each engine's provisioner registers here by name, as
// database/sql drivers do, and opens the configured databases of that
// engine: it creates and grants the per-person roles, checks the admin
// role's privileges, and watches for logins that went around keygate.
package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Config is how keygate reaches and manages one upstream database.
type Config struct {
	Name     string // keygate's name for the database
	Address  string // host:port
	Database string // upstream database name
	Schemas  []string
	// OwnerRole owns the application's tables; the admin group role is
	// made a member of it so that admin sessions can change them. Empty
	// for none.
	OwnerRole     string
	AdminUser     string
	AdminPassword string
	TLS           string // disable, prefer, require, verify-full
	TLSCAFile     string
	// LocalInfile lets sessions that may write run LOAD DATA LOCAL
	// INFILE (MySQL and MariaDB only); off, the gateway refuses it.
	LocalInfile bool
	// Pool and budget: see config.Database.
	Pool                    bool
	PoolIdleTimeout         time.Duration
	PoolMaxIdle             int
	MaxConnections          int
	MaxConnectionsPerPerson int
	QueueTimeout            time.Duration
}

// Database is one configured upstream database, as the server manages it.
// A provisioner's Database also implements what its engine's gateway needs
// of it (leasing connections), which the engine asserts.
type Database interface {
	// Check logs in as the admin role and checks what keygate needs
	// there; connections are refused until a check passes.
	Check(ctx context.Context) error
	// Ready reports whether the last check passed.
	Ready() bool
	// Restriction says whether the upstream lets keygate's roles log in
	// only from keygate, with what keygate found and what to do, in words.
	Restriction() (Restriction, string)
	// Standing lists the upstream's standing credentials: logins that
	// reach the database without keygate, which the seeds want at zero.
	Standing(ctx context.Context) ([]Standing, error)
	Close()
}

// Standing is one login on an upstream that holds access without keygate:
// a role or user that can log in with a password or is a superuser, other
// than keygate's own admin role, or one of keygate's person roles found
// able to log in while no login window is open.
type Standing struct {
	// Name is the role (PostgreSQL) or 'user'@'host' (MySQL).
	Name string
	// Why says what makes it a standing credential, in words.
	Why string
	// Managed says it is one of keygate's person roles, which should be
	// at rest.
	Managed bool
}

// Restriction is what keygate can tell of where the upstream lets
// keygate's roles log in from.
type Restriction int

// Restrictions.
const (
	RestrictionUnknown Restriction = iota // keygate may not read the upstream's rules
	Restricted                            // only from keygate's address
	Unrestricted                          // a rule lets them in from elsewhere
)

// Intrusion is a backend (a connection) of one of keygate's roles that
// keygate did not open: someone logged in to the upstream directly,
// around the gateway and its audit.
type Intrusion struct {
	Role string
	// Person is whose role it is; empty for a group role.
	Person string
	// Database is keygate's name of the database the backend is connected
	// to; empty when keygate does not front that database.
	Database     string
	PID          uint32
	ClientAddr   string
	ClientPort   int
	BackendStart time.Time
	// Terminated says the backend was ended and confirmed gone at Ended;
	// Err says why not otherwise.
	Terminated bool
	Ended      time.Time
	Err        error
}

// Provisioner opens one engine's databases for a server.
type Provisioner interface {
	// Open readies database cfg; nothing connects before its first use or
	// check.
	Open(cfg Config) (Database, error)
	// Watch ends the backends of keygate's roles that keygate did not
	// open, telling Options.OnIntrusion of each, until ctx ends.
	Watch(ctx context.Context)
}

// Options are what every provisioner is made with.
type Options struct {
	Log *slog.Logger
	// OnIntrusion, when set, is told of every intrusion Watch finds.
	OnIntrusion func(Intrusion)
	// Peers, when set, are the other keygate servers that share this
	// one's state and its upstreams: a backend one of them opened is not
	// an intrusion.
	Peers Peers
}

// Peers records the upstream backends each keygate server sharing a state
// opens, so that the others' watchers leave them alone.
type Peers interface {
	// Claim records that this server opened backend pid on the upstream
	// server at address; Release forgets it when its session ends.
	Claim(ctx context.Context, address string, pid uint32) error
	Release(ctx context.Context, address string, pid uint32) error
	// Claimed reports which of pids on address a server claimed within
	// PeerClaimWindow of the backend's start.
	Claimed(ctx context.Context, address string, backends map[uint32]time.Time) (map[uint32]bool, error)
	// LockWindow holds the login window of role (a person's role or
	// user) on the upstream server at address for this server until
	// unlock, waiting while another server holds it: the servers take a
	// person's window in turn, so that none changes the password or
	// closes the window under another's login.
	LockWindow(ctx context.Context, address, role string) (unlock func(), err error)
}

// PeerClaimWindow bounds how far a peer's claim may be from the start of
// the backend it names (the claim follows the login at once; the rest is
// clock difference), so that a claim left by a server that died does not
// cover a later backend that reused the process id.
const PeerClaimWindow = 30 * time.Second

// PeerGrace is how long a backend no server of this one's state knows is
// left alone before it is ended: time for the peer that opened it to
// claim it.
const PeerGrace = 3 * time.Second

// Factory makes a provisioner, one per server: its databases share what
// it keeps of their upstream servers.
type Factory func(Options) Provisioner

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a provisioner available by engine name. Provisioners
// register in their package's init; registering a name twice, or a nil
// factory, panics.
func Register(engine string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if f == nil {
		panic("upstream: Register factory is nil")
	}
	if _, dup := factories[engine]; dup {
		panic("upstream: Register called twice for engine " + engine)
	}
	factories[engine] = f
}

// NewProvisioner makes the provisioner registered for engine.
func NewProvisioner(engine string, o Options) (Provisioner, error) {
	mu.RLock()
	f, ok := factories[engine]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no upstream provisioner for engine %q in this keygate (it has %v)", engine, Engines())
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return f(o), nil
}

// Engines lists the engines with a registered provisioner, sorted.
func Engines() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(factories))
	for name := range factories {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
