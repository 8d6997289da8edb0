package postgres

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/upstream"
)

// Servers is what every Upstream of a process shares about each PostgreSQL
// server it reaches. Roles belong to a whole server, not to a database, so
// the login windows of person roles, the backends keygate opened and the
// watch for backends it did not open are kept per server address, whichever
// database they were opened for.
type Servers struct {
	log *slog.Logger
	// OnIntrusion, when set, is told of every backend of a keygate-managed
	// role that keygate did not open, once it has tried to end it. The
	// server audits it; set it before the first Upstream is created.
	OnIntrusion func(Intrusion)
	// Peers, when set, are the servers sharing this one's state; set it
	// before the first Upstream is created.
	Peers upstream.Peers

	mu      sync.Mutex
	servers map[string]*server
}

// NewServers makes the shared state for a process's upstreams.
func NewServers(log *slog.Logger) *Servers {
	return &Servers{log: log, servers: map[string]*server{}}
}

// server is the shared state of one PostgreSQL server.
type server struct {
	address string
	log     *slog.Logger
	report  func(Intrusion)
	peers   upstream.Peers
	// wake asks the watcher for a sweep now rather than at its next tick:
	// a login window just closed, which is when a person racing keygate
	// for the role's password could have logged in.
	wake chan struct{}

	mu      sync.Mutex
	windows map[string]*window
	// upstreams are the databases on this server, for the watcher's admin
	// connection and to name the database of a backend it finds.
	upstreams []*Upstream
	// backends are the live backends keygate opened, by process id.
	backends map[uint32]string // pid → role
	// dials are logins in progress: a backend that appears while one is
	// under way may be that login's, and is judged once it has finished.
	dials map[*dial]struct{}
	// retired are backends whose sessions ended, by pid, with the time the
	// session ended: a backend leaves pg_stat_activity a moment after it
	// closed its socket, and one that has not must still be ended.
	retired map[uint32]time.Time
	// live counts the live backends keygate opened per role: when a role
	// has none and no login window is open, keygate clears any password
	// the person set from inside a session.
	live map[string]int
	// unclaimed are the backends no keygate server of the shared state
	// had claimed at the watcher's last looks, with when that began.
	unclaimed map[uint32]time.Time
}

// maxRetired is how many retired backends a server keeps before it drops
// those retired more than a minute ago.
const maxRetired = 4096

// dial is one login in progress.
type dial struct{ done chan struct{} }

func (ss *Servers) server(address string) *server {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.servers[address]
	if !ok {
		s = &server{address: address, log: ss.log.With("upstream", address), report: ss.OnIntrusion, peers: ss.Peers, wake: make(chan struct{}, 1),
			windows: map[string]*window{}, backends: map[uint32]string{}, dials: map[*dial]struct{}{},
			retired: map[uint32]time.Time{}, live: map[string]int{}}
		ss.servers[address] = s
	}
	return s
}

func (ss *Servers) all() []*server {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*server, 0, len(ss.servers))
	for _, s := range ss.servers {
		out = append(out, s)
	}
	return out
}

func (s *server) add(u *Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreams = append(s.upstreams, u)
}

func (s *server) remove(u *Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range s.upstreams {
		if v == u {
			s.upstreams = append(s.upstreams[:i], s.upstreams[i+1:]...)
			return
		}
	}
}

func (s *server) window(role string) *window {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.windows[role]
	if !ok {
		w = &window{}
		s.windows[role] = w
	}
	return w
}

// startDial registers a login about to start.
func (s *server) startDial() *dial {
	d := &dial{done: make(chan struct{})}
	s.mu.Lock()
	s.dials[d] = struct{}{}
	s.mu.Unlock()
	return d
}

// endDial records the backend a login opened (pid 0 when it failed), then
// lets anyone waiting on the login go on: a watcher that finds the backend
// after this knows it is keygate's.
func (s *server) endDial(d *dial, pid uint32, role string) {
	s.mu.Lock()
	if pid != 0 {
		s.backends[pid] = role
		s.live[role]++
		delete(s.retired, pid)
	}
	delete(s.dials, d)
	s.mu.Unlock()
	close(d.done)
	if pid != 0 && s.peers != nil {
		go s.tellPeers("claim", pid, s.peers.Claim)
	}
}

// tellPeers records a backend's claim or release for the servers that
// share this one's state. It runs apart from the login and the session's
// end, which wait for no other server; a claim that fails is tried again
// every second while the backend lives, since until it lands the other
// servers take the backend for an intrusion.
func (s *server) tellPeers(what string, pid uint32, fn func(context.Context, string, uint32) error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := fn(ctx, s.address, pid)
		cancel()
		if err == nil {
			return
		}
		if attempt == 0 {
			s.log.Error("could not tell the other keygate servers of a backend; trying again", "action", what, "pid", pid, "err", err)
		}
		if what != "claim" || !s.holds(pid) {
			return
		}
		time.Sleep(time.Second)
	}
}

// holds reports whether backend pid is a live one of keygate's.
func (s *server) holds(pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.backends[pid]
	return ok
}

// release forgets a backend whose session ended and reports how many
// backends keygate still holds for its role.
func (s *server) release(pid uint32, at time.Time) (role string, left int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	role, ok := s.backends[pid]
	if !ok {
		return "", 0
	}
	delete(s.backends, pid)
	if s.peers != nil {
		go s.tellPeers("release", pid, s.peers.Release)
	}
	if len(s.retired) >= maxRetired {
		// The watcher forgets retired backends that are gone; without
		// one (an admin role that lacks privileges), keep a bound.
		for p, ended := range s.retired {
			if at.Sub(ended) > time.Minute {
				delete(s.retired, p)
			}
		}
	}
	s.retired[pid] = at
	s.live[role]--
	left = s.live[role]
	if left <= 0 {
		delete(s.live, role)
	}
	return role, left
}

func (s *server) liveBackends(role string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[role]
}

// poke asks the watcher for a sweep soon.
func (s *server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
