package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/upstream"
)

// Intrusion is a backend of a keygate-managed role that keygate did not
// open: someone logged in to the upstream directly, bypassing the gateway
// and its audit.
type Intrusion = upstream.Intrusion

// DefaultWatchInterval is how often the watcher looks for backends keygate
// did not open when no login window closes in between. A backend is ended
// at most this long (plus the time the sweep takes) after it appears.
const DefaultWatchInterval = time.Second

// orphanGrace is how long keygate's own backend may take to exit after its
// session ended before the watcher ends it.
const orphanGrace = 5 * time.Second

// Watch ends, on every upstream server, the backends of keygate-managed
// roles that keygate did not open, every interval and right after each
// login window closes. It returns when ctx ends.
func (ss *Servers) Watch(ctx context.Context, interval time.Duration) {
	started := map[*server]bool{}
	for {
		for _, s := range ss.all() {
			if !started[s] {
				started[s] = true
				go s.watch(ctx, interval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (s *server) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		err := s.sweep(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.log.Error("cannot look for upstream backends keygate did not open; direct logins as keygate's roles would go unnoticed", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("looking for upstream backends keygate did not open again")
			failing = false
		}
	}
}

// errNoWatcher means no database on a server has an admin role that may
// see and end other roles' backends.
var errNoWatcher = errors.New("no admin role on this server has pg_signal_backend and pg_read_all_stats")

// watcher is an upstream on s whose admin role passed Check.
func (s *server) watcher() *Upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.upstreams {
		if u.Ready() {
			return u
		}
	}
	return nil
}

// activity is a backend of a keygate-managed role as pg_stat_activity
// shows it.
type activity struct {
	pid          uint32
	role, marker string
	datname      string
	addr         string
	port         int
	start        time.Time
}

// sweep finds and ends the backends of keygate-managed roles that keygate
// did not open, and those of its own that outlived their session. A
// parallel worker runs as its leader's role under a pid of its own; it is
// judged by its leader, which ending ends it too.
func (s *server) sweep(ctx context.Context) error {
	u := s.watcher()
	if u == nil {
		return errNoWatcher
	}
	u.retryResets()
	began := time.Now()
	rows, err := u.admin.Query(ctx, `
		SELECT a.pid, r.rolname, pg_catalog.shobj_description(r.oid, 'pg_authid'), coalesce(a.datname, ''),
			coalesce(pg_catalog.host(a.client_addr), ''), coalesce(a.client_port, -1), coalesce(a.backend_start, '-infinity')
		FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
		WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') IN ($1, $2, $3) AND a.datname = ANY($4)
			AND a.backend_type <> 'parallel worker'`,
		roleMarker, groupMarker, peopleMarker, s.databases())
	if err != nil {
		return u.adminErr("list backends", err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (activity, error) {
		var a activity
		var pid int32
		err := r.Scan(&pid, &a.role, &a.marker, &a.datname, &a.addr, &a.port, &a.start)
		a.pid = uint32(pid)
		return a, err
	})
	if err != nil {
		return u.adminErr("list backends", err)
	}
	offset := u.clockOffset()
	s.mu.Lock()
	var suspects, orphans []activity
	seen := map[uint32]bool{}
	for _, a := range found {
		seen[a.pid] = true
		switch s.owner(a, offset) {
		case ownerLive:
		case ownerRetired:
			if ended := s.retired[a.pid]; time.Since(ended) >= orphanGrace {
				orphans = append(orphans, a)
			}
		default:
			suspects = append(suspects, a)
		}
	}
	for pid, ended := range s.retired {
		if !seen[pid] && ended.Before(began) {
			delete(s.retired, pid)
		}
	}
	dials := make([]*dial, 0, len(s.dials))
	for d := range s.dials {
		dials = append(dials, d)
	}
	s.mu.Unlock()

	if len(suspects) > 0 && len(dials) > 0 {
		// A backend that appeared while keygate was logging in may be that
		// login's: judge it once those logins have finished. By then its
		// session may even be over.
		if err := waitDials(ctx, dials); err != nil {
			return err
		}
		s.mu.Lock()
		suspects = slices.DeleteFunc(suspects, func(a activity) bool { return s.owner(a, offset) != ownerNone })
		s.mu.Unlock()
	}
	if len(suspects) > 0 && s.peers != nil {
		if suspects, err = s.notPeers(ctx, suspects, offset); err != nil {
			return err
		}
	}
	for _, a := range orphans {
		if _, err := u.terminate(ctx, a.pid); err != nil {
			s.log.Error("a backend keygate opened outlived its session and could not be ended", "role", a.role, "pid", a.pid, "err", err)
			continue
		}
		s.log.Warn("ended a backend keygate opened that outlived its session", "role", a.role, "pid", a.pid)
	}
	for _, a := range suspects {
		s.intruded(ctx, u, a)
	}
	return nil
}

// notPeers keeps the suspects that no other keygate server sharing this
// one's state claimed, and that have gone unclaimed for PeerGrace of
// successful looks: time for the server that opened one to claim it,
// after its login or after the state database was unreachable. While the
// claims cannot be read, nothing is ended: a peer's session is not taken
// for an intrusion on a guess.
func (s *server) notPeers(ctx context.Context, suspects []activity, offset time.Duration) ([]activity, error) {
	starts := make(map[uint32]time.Time, len(suspects))
	for _, a := range suspects {
		starts[a.pid] = a.start.Add(offset)
	}
	claimed, err := s.peers.Claimed(ctx, s.address, starts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.unclaimed = nil
		return nil, fmt.Errorf("read the other keygate servers' backends: %w", err)
	}
	now := time.Now()
	seen := make(map[uint32]time.Time, len(suspects))
	for _, a := range suspects {
		if claimed[a.pid] {
			continue
		}
		first, ok := s.unclaimed[a.pid]
		if !ok {
			first = now
		}
		seen[a.pid] = first
	}
	s.unclaimed = seen
	return slices.DeleteFunc(suspects, func(a activity) bool {
		first, ok := seen[a.pid]
		return !ok || now.Sub(first) < upstream.PeerGrace
	}), nil
}

// Whose a backend is, as far as keygate knows.
const (
	ownerNone    = iota // not keygate's
	ownerLive           // keygate's, in a live session
	ownerRetired        // keygate's, its session over
)

// owner says whose backend a is. A retired pid seen again is keygate's
// backend on its way out, unless the backend started after the session
// ended: then the process id was reused by a backend keygate did not open.
// offset turns keygate's clock into the upstream's. Called with s.mu held.
func (s *server) owner(a activity, offset time.Duration) int {
	if _, ok := s.backends[a.pid]; ok {
		return ownerLive
	}
	if ended, ok := s.retired[a.pid]; ok && !a.start.After(ended.Add(-offset)) {
		return ownerRetired
	}
	return ownerNone
}

// waitDials waits for logins under way to finish; a login gives up within
// its connect timeout, so this is bounded.
func waitDials(ctx context.Context, dials []*dial) error {
	for _, d := range dials {
		select {
		case <-d.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// intruded ends a backend keygate did not open and reports it.
func (s *server) intruded(ctx context.Context, u *Upstream, a activity) {
	in := Intrusion{Role: a.role, PID: a.pid, ClientAddr: a.addr, ClientPort: a.port, BackendStart: a.start, Database: s.databaseName(a.datname)}
	if a.marker == roleMarker {
		in.Person = personOf(a.role)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	in.Ended, in.Err = u.terminate(tctx, a.pid)
	in.Terminated = in.Err == nil
	if in.Terminated {
		s.log.Warn("ended a backend of a keygate-managed role that keygate did not open: someone logged in to the upstream directly; add the pg_hba.conf rule from keygate's README",
			"role", a.role, "pid", a.pid, "client_addr", a.addr, "client_port", a.port, "database", a.datname)
	} else {
		s.log.Error("found a backend of a keygate-managed role that keygate did not open and could not end it",
			"role", a.role, "pid", a.pid, "client_addr", a.addr, "client_port", a.port, "database", a.datname, "err", in.Err)
	}
	if s.report != nil {
		s.report(in)
	}
}

// databases are the upstream databases this process fronts on s. The
// watcher looks only at backends in them: another keygate in front of
// other databases of the same server opens backends of the same roles
// there, which this one cannot tell from a stranger's.
func (s *server) databases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.upstreams))
	for _, u := range s.upstreams {
		out = append(out, u.cfg.Database)
	}
	return out
}

// databaseName is keygate's name of the upstream database datname.
func (s *server) databaseName(datname string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.upstreams {
		if u.cfg.Database == datname {
			return u.cfg.Name
		}
	}
	return ""
}

// personOf is the person a person role belongs to: "dave" for "dave.rw".
func personOf(role string) string {
	for _, l := range access.Levels {
		if p, ok := strings.CutSuffix(role, "."+string(l)); ok {
			return p
		}
	}
	return ""
}

// terminate ends backend pid and returns once keygate sees it gone: out of
// pg_stat_activity and holding no lock, so that it can commit nothing more
// and blocks nobody. pg_terminate_backend's own wait polls only every
// 100 ms; asking from here ends a revocation within milliseconds.
func (u *Upstream) terminate(ctx context.Context, pid uint32) (time.Time, error) {
	if err := u.endBackend(ctx, pid); err != nil {
		return time.Time{}, fmt.Errorf("end backend %d: %w", pid, err)
	}
	return time.Now(), nil
}
