package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// peopleQuery is pgbench's select-only statement.
const peopleQuery = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

// login is one person's user name and password (for keygate, a token).
type login struct {
	user     string
	password string
}

// tokenMargin is how long before its tokens expire a loginSet mints new
// ones, so that no connection starts with a token about to lapse.
const tokenMargin = 2 * time.Minute

// loginSet is the people of a connect-per-txn-people run, handed out
// round-robin. keygate's tokens are short-lived: when they are about to
// expire the set mints new ones, so that a long run does not outlast them.
type loginSet struct {
	next atomic.Uint64

	mu      sync.Mutex
	logins  []login
	expires time.Time // zero: never
	mint    func(context.Context) ([]login, time.Time, error)
}

// newLoginSet mints the first logins with mint.
func newLoginSet(ctx context.Context, mint func(context.Context) ([]login, time.Time, error)) (*loginSet, error) {
	logins, expires, err := mint(ctx)
	if err != nil {
		return nil, err
	}
	return &loginSet{logins: logins, expires: expires, mint: mint}, nil
}

// fixedLogins is a set of one login that does not expire: the admin user,
// for the targets that have no per-person logins.
func fixedLogins(user, password string) func(context.Context) (*loginSet, error) {
	return func(context.Context) (*loginSet, error) {
		return &loginSet{logins: []login{{user: user, password: password}}}, nil
	}
}

// take returns the next login round-robin, minting new ones first if the
// current ones are about to expire.
func (s *loginSet) take(ctx context.Context) (login, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.expires.IsZero() && time.Until(s.expires) < tokenMargin {
		logins, expires, err := s.mint(ctx)
		if err != nil {
			return login{}, fmt.Errorf("renew tokens: %w", err)
		}
		s.logins, s.expires = logins, expires
	}
	return s.logins[(s.next.Add(1)-1)%uint64(len(s.logins))], nil
}

// peopleRun is the load of the connect-per-txn-people runs: clients
// goroutines, each of which, for the duration, takes the next person,
// opens a new TLS connection as them, runs pgbench's select-only
// statement with a random aid, and closes the connection.
type peopleRun struct {
	clients  int
	duration time.Duration
	// protocol is as for pgbench -M: simple sends the statement as text
	// with the aid in it; extended and prepared send it with Parse, Bind
	// and Execute, which is the same on a connection that runs one
	// statement.
	protocol string
}

// run runs the load against e as c's people. Like pgbench.run, a failed
// or hung run is reported in the result, and the error is for an
// interruption.
func (l peopleRun) run(ctx context.Context, e endpoint, m mode, c credentials) (runResult, error) {
	res := runResult{Engine: e.engine, Target: e.name, Mode: m, People: len(c.people.logins)}
	runCtx, cancel := context.WithTimeout(ctx, l.duration+time.Minute)
	defer cancel()
	cpuBefore := selfCPU()
	stats := make([]clientStats, l.clients)
	var wg sync.WaitGroup
	began := time.Now()
	end := began.Add(l.duration)
	for i := range stats {
		wg.Go(func() {
			s := &stats[i]
			for time.Now().Before(end) {
				t0 := time.Now()
				if s.err = l.transaction(runCtx, e, c.people, s); s.err != nil {
					return
				}
				s.record(time.Since(t0))
			}
		})
	}
	wg.Wait()
	res.CPU.Driver = selfCPU() - cpuBefore
	failed := summarize(&res, stats, time.Since(began))
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		res.Error = fmt.Sprintf("the clients had not finished %s after a %s run and were stopped", l.duration+time.Minute, l.duration)
	case len(failed) > 0:
		res.Error = fmt.Sprintf("%d of %d clients failed and stopped; the first: %v", len(failed), l.clients, failed[0])
	case res.Transactions == 0:
		res.Error = "no transaction completed"
	}
	return res, nil
}

// transaction connects to e as the next of people, reads one random
// account, and closes the connection, adding the time to connect to s.
func (l peopleRun) transaction(ctx context.Context, e endpoint, people *loginSet, s *clientStats) error {
	who, err := people.take(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	e.user = who.user
	conn, err := connect(ctx, e, who.password)
	if err != nil {
		return fmt.Errorf("%s: %w", who.user, err)
	}
	s.connects++
	s.connect += time.Since(t0)
	aid := strconv.Itoa(rand.IntN(100_000*scale) + 1)
	var qerr error
	if l.protocol == "simple" {
		_, qerr = conn.Exec(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = "+aid).ReadAll()
	} else {
		qerr = conn.ExecParams(ctx, peopleQuery, [][]byte{[]byte(aid)}, nil, nil, nil).Read().Err
	}
	cerr := conn.Close(ctx)
	if qerr != nil {
		return fmt.Errorf("%s: aid %s: %w", who.user, aid, qerr)
	}
	if cerr != nil {
		return fmt.Errorf("%s: close: %w", who.user, cerr)
	}
	return nil
}
