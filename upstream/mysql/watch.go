package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/upstream"
)

// watchInterval is how often the watcher looks for connections of
// keygate's person users that keygate did not open.
const watchInterval = time.Second

// watch sweeps every server each interval until ctx ends.
func (p *provisioner) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, s := range p.all() {
			if err := p.sweep(ctx, s); err != nil && ctx.Err() == nil {
				p.log.Warn("watching the upstream's connections failed; trying again", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// process is a row of information_schema.PROCESSLIST.
type process struct {
	id   uint64
	user string
	host string
	db   sql.NullString
	time int64
}

// sweep retries failed locks, then ends every connection of a person user
// keygate set up that keygate did not open, except for users whose login
// window is open right now (the gateway's own connection may not be
// recorded yet; the next sweep sees it).
func (p *provisioner) sweep(ctx context.Context, s *server) error {
	s.mu.Lock()
	if len(s.upstreams) == 0 {
		s.mu.Unlock()
		return nil
	}
	u := s.upstreams[0]
	retry := make(map[string]*Upstream, len(s.unreset))
	for user, x := range s.unreset {
		retry[user] = x
	}
	s.mu.Unlock()
	for user, x := range retry {
		w := s.window(user)
		w.Lock()
		// Not for long: an account left open is worse than another
		// server's login failing once.
		lockCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		unlock, err := s.lockPeers(lockCtx, user)
		cancel()
		if err != nil {
			unlock = func() {}
		}
		if err := x.atRest(user); err != nil {
			p.log.Warn("a person user is still unlocked after a login; keygate tries again every second", "user", user, "err", err)
		}
		unlock()
		w.Unlock()
	}
	rows, err := u.admin.QueryContext(ctx, "SELECT ID, USER, HOST, DB, TIME FROM information_schema.PROCESSLIST")
	if err != nil {
		return u.adminErr("list connections", err)
	}
	var procs []process
	for rows.Next() {
		var pr process
		if err := rows.Scan(&pr.id, &pr.user, &pr.host, &pr.db, &pr.time); err != nil {
			rows.Close()
			return u.adminErr("list connections", err)
		}
		procs = append(procs, pr)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return u.adminErr("list connections", err)
	}
	s.forgetClosed(procs)
	type suspect struct {
		pr     process
		person string
	}
	var suspects []suspect
	for _, pr := range procs {
		s.mu.Lock()
		person, managed := s.users[pr.user]
		_, ours := s.opened[pr.id]
		intruder := managed && !ours && !s.open[pr.user]
		s.mu.Unlock()
		if intruder {
			suspects = append(suspects, suspect{pr, person})
		}
	}
	if len(suspects) > 0 && s.peers != nil {
		// Another keygate server sharing the state may have opened it:
		// leave its connections, and give one first seen now PeerGrace
		// to be claimed (the process list gives no start time). Thread
		// ids are not reused while the server runs, so a claim is not
		// matched against one. While the claims cannot be read, nothing
		// is ended.
		ids := map[uint32]time.Time{}
		for _, x := range suspects {
			ids[uint32(x.pr.id)] = time.Time{}
		}
		claimed, err := s.peers.Claimed(ctx, s.address, ids)
		if err != nil {
			// The grace starts again once the claims can be read: a
			// peer's claim may have waited for the state database too.
			s.mu.Lock()
			s.suspected = nil
			s.mu.Unlock()
			return fmt.Errorf("read the other keygate servers' connections: %w", err)
		}
		now := time.Now()
		s.mu.Lock()
		seen := make(map[uint64]time.Time, len(suspects))
		for _, x := range suspects {
			if claimed[uint32(x.pr.id)] {
				continue
			}
			first, ok := s.suspected[x.pr.id]
			if !ok {
				first = now
			}
			seen[x.pr.id] = first
		}
		s.suspected = seen
		s.mu.Unlock()
		suspects = slices.DeleteFunc(suspects, func(x suspect) bool {
			first, ok := seen[x.pr.id]
			return !ok || now.Sub(first) < upstream.PeerGrace
		})
	}
	for _, x := range suspects {
		p.intruded(ctx, s, u, x.pr, x.person)
	}
	return nil
}

// forgetClosed forgets the connections keygate closed that the server no
// longer lists.
func (s *server) forgetClosed(procs []process) {
	listed := make(map[uint64]bool, len(procs))
	for _, pr := range procs {
		listed[pr.id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.closing {
		if !listed[id] {
			delete(s.closing, id)
			delete(s.opened, id)
		}
	}
}

// intruded ends pr and reports it.
func (p *provisioner) intruded(ctx context.Context, s *server, u *Upstream, pr process, person string) {
	in := upstream.Intrusion{Role: pr.user, Person: person, PID: uint32(pr.id),
		BackendStart: time.Now().Add(-time.Duration(pr.time) * time.Second)}
	if host, port, err := net.SplitHostPort(pr.host); err == nil {
		in.ClientAddr = host
		in.ClientPort, _ = strconv.Atoi(port)
	} else {
		in.ClientAddr = pr.host
	}
	if pr.db.Valid {
		in.Database = s.databaseName(pr.db.String)
	}
	in.Ended, in.Err = u.kill(ctx, pr.id)
	in.Terminated = in.Err == nil
	p.log.Warn("ended a connection of a keygate person user that keygate did not open: someone logged in to the upstream directly",
		"user", in.Role, "person", in.Person, "thread", pr.id, "client", pr.host, "terminated", in.Terminated, "err", in.Err)
	if p.onIntrusion != nil {
		p.onIntrusion(in)
	}
}

// databaseName is keygate's name of the database serving schema, or "".
func (s *server) databaseName(schema string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.upstreams {
		if slices.Contains(u.schemas, schema) {
			return u.cfg.Name
		}
	}
	return ""
}

// errStillThere means a killed connection was still listed after the
// wait.
var errStillThere = errors.New("the connection is still listed after KILL CONNECTION")

// kill ends connection id and returns when PROCESSLIST no longer lists it,
// waiting up to two seconds.
func (u *Upstream) kill(ctx context.Context, id uint64) (time.Time, error) {
	if _, err := u.admin.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatUint(id, 10)); err != nil {
		// 1094, unknown thread id: it is already gone.
		var myErr *driver.MySQLError
		if !errors.As(err, &myErr) || myErr.Number != 1094 {
			return time.Time{}, u.adminErr(fmt.Sprintf("kill connection %d", id), err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var n int
		if err := u.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
			return time.Time{}, u.adminErr(fmt.Sprintf("confirm connection %d ended", id), err)
		}
		if n == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("connection %d: %w", id, errStillThere)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
