package mysql

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/upstream"
)

// EngineName is config's engine: mysql, for MySQL and MariaDB alike.
const EngineName = "mysql"

func init() { upstream.Register(EngineName, newProvisioner) }

// provisioner opens MySQL and MariaDB databases; databases on the same
// server share what keygate keeps of it (login windows, its own
// connections, the watcher's sweep).
type provisioner struct {
	log         *slog.Logger
	onIntrusion func(upstream.Intrusion)
	// peers are the servers sharing this one's state, or nil.
	peers upstream.Peers

	mu      sync.Mutex
	servers map[string]*server // by address
}

func newProvisioner(o upstream.Options) upstream.Provisioner {
	return &provisioner{log: o.Log, onIntrusion: o.OnIntrusion, peers: o.Peers, servers: map[string]*server{}}
}

// Open implements upstream.Provisioner.
func (p *provisioner) Open(cfg upstream.Config) (upstream.Database, error) {
	p.mu.Lock()
	s, ok := p.servers[cfg.Address]
	if !ok {
		s = newServer()
		s.address, s.peers, s.log = cfg.Address, p.peers, p.log
		p.servers[cfg.Address] = s
	}
	p.mu.Unlock()
	return newUpstream(cfg, s, p.log)
}

// all lists the servers.
func (p *provisioner) all() []*server {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*server, 0, len(p.servers))
	for _, s := range p.servers {
		out = append(out, s)
	}
	return out
}

// Watch implements upstream.Provisioner: see watch.go.
func (p *provisioner) Watch(ctx context.Context) { p.watch(ctx, watchInterval) }

// Restriction implements upstream.Database. keygate creates person users
// as 'name'@'%' and keygate's configuration does not yet say which address
// it connects from, so it cannot restrict them by host; it keeps them
// locked between logins instead.
func (u *Upstream) Restriction() (upstream.Restriction, string) {
	return upstream.RestrictionUnknown, "keygate creates its person users as 'name'@'%' (any host) because its configuration does not name the address it connects from; " +
		"they stay locked (ACCOUNT LOCK) except during keygate's own logins, and the watcher ends their connections that keygate did not open"
}

// server is what keygate keeps of one upstream server.
type server struct {
	address string
	peers   upstream.Peers // nil without servers sharing the state
	log     *slog.Logger

	mu        sync.Mutex
	upstreams []*Upstream
	windows   map[string]*sync.Mutex // user → held while its login window is open
	open      map[string]bool        // users with a login window open now
	users     map[string]string      // person users keygate set up since start → person
	opened    map[uint64]bool        // thread ids of the connections keygate opened
	closing   map[uint64]bool        // of those, the ones keygate closed, until the server no longer lists them
	unreset   map[string]*Upstream   // users whose lock failed, with who to retry through
	// suspected are the connections no server of the shared state had
	// claimed at the last sweep, with when they were first seen.
	suspected map[uint64]time.Time
}

func newServer() *server {
	return &server{windows: map[string]*sync.Mutex{}, open: map[string]bool{}, users: map[string]string{},
		opened: map[uint64]bool{}, closing: map[uint64]bool{}, unreset: map[string]*Upstream{}}
}

func (s *server) add(u *Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreams = append(s.upstreams, u)
}

func (s *server) remove(u *Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.upstreams {
		if x == u {
			s.upstreams = append(s.upstreams[:i], s.upstreams[i+1:]...)
			break
		}
	}
	for user, x := range s.unreset {
		if x == u {
			delete(s.unreset, user)
		}
	}
}

func (s *server) window(user string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.windows[user]
	if !ok {
		w = &sync.Mutex{}
		s.windows[user] = w
	}
	return w
}

func (s *server) opening(user string, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open {
		s.open[user] = true
	} else {
		delete(s.open, user)
	}
}

func (s *server) known(user, person string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[user] = person
}

func (s *server) setUnreset(user string, u *Upstream, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed {
		s.unreset[user] = u
	} else {
		delete(s.unreset, user)
	}
}

// Opened records that keygate opened connection threadID (the server's
// connection id, as the handshake and CONNECTION_ID() give it): the
// watcher leaves it alone. The gateway calls it from the dial it passes to
// WithLogin.
func (u *Upstream) Opened(threadID uint64) {
	u.server.mu.Lock()
	defer u.server.mu.Unlock()
	u.server.opened[threadID] = true
	u.server.tellPeers("claim", threadID, true)
}

// tellPeers records a connection's claim or release for the servers that
// share this one's state, apart from the login and the session's end; a
// claim that fails is tried again every second while the connection is
// keygate's, since until it lands the other servers take it for an
// intrusion.
func (s *server) tellPeers(what string, threadID uint64, claim bool) {
	if s.peers == nil {
		return
	}
	fn := s.peers.Release
	if claim {
		fn = s.peers.Claim
	}
	go func() {
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := fn(ctx, s.address, uint32(threadID))
			cancel()
			if err == nil {
				return
			}
			if attempt == 0 {
				s.log.Error("could not tell the other keygate servers of a connection; trying again", "action", what, "thread", threadID, "err", err)
			}
			s.mu.Lock()
			held := s.opened[threadID]
			s.mu.Unlock()
			if !claim || !held {
				return
			}
			time.Sleep(time.Second)
		}
	}()
}

// closedAsync records that keygate closed connection threadID: the next
// sweep that finds the server no longer listing it forgets it, which
// costs no statement of its own.
func (u *Upstream) closedAsync(threadID uint64) {
	u.server.mu.Lock()
	defer u.server.mu.Unlock()
	u.server.closing[threadID] = true
}

// Closed records that keygate's connection threadID has ended. Call it
// once the server no longer lists the connection (the client saw it close,
// or a KILL was confirmed): a thread still listed and no longer recorded
// is taken for an intrusion.
func (u *Upstream) Closed(threadID uint64) {
	u.server.mu.Lock()
	defer u.server.mu.Unlock()
	delete(u.server.opened, threadID)
	u.server.tellPeers("release", threadID, false)
}
