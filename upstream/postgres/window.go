package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/access"
)

// loginWindow bounds how long a role stays able to log in should keygate
// die between opening a login window and closing it. It is counted on the
// upstream's clock (see Upstream.clockOffset). In the normal path the role
// is NOLOGIN again milliseconds later.
const loginWindow = time.Minute

// window is the login state of one person role. Logins that overlap in
// time share one password: the first opens the role (LOGIN, a fresh random
// password), the last one out closes it again (NOLOGIN, no password). Two
// logins never overwrite each other's password, and concurrent connections
// of one person do not wait for each other's handshake.
type window struct {
	mu       sync.Mutex
	password string // while inflight > 0
	inflight int
	// generation counts passwords; stale asks the next login to set a new
	// one because something outside keygate disturbed the current one.
	generation int
	stale      bool
	// unreset is set while the role could not be put back at rest; the
	// watcher tries again on every sweep.
	unreset bool
	// unlock lets the other servers sharing keygate's state have the
	// window again; set while this one holds it (inflight > 0).
	unlock func()
}

// peerLockWait bounds the wait for another server's window before a reset
// goes ahead without it: a role left open is worse than a peer's login
// failing once.
const peerLockWait = 2 * time.Second

// lockPeers takes role's window from the other servers sharing keygate's
// state, if there are any; the caller holds w.mu and lets it go with
// w.release.
func (s *server) lockPeers(ctx context.Context, w *window, role string) error {
	if s.peers == nil || w.unlock != nil {
		return nil
	}
	unlock, err := s.peers.LockWindow(ctx, s.address, role)
	if err != nil {
		return fmt.Errorf("login %q: wait for the other keygate servers' login window: %w", role, err)
	}
	w.unlock = unlock
	return nil
}

// release lets the other servers have the window again. The caller holds
// w.mu.
func (w *window) release() {
	if w.unlock != nil {
		w.unlock()
		w.unlock = nil
	}
}

// atRestShared is atRest for a role no login of this server is opening:
// it waits for a window another server has open, so as not to close it
// under that server's login, but not for long.
func (u *Upstream) atRestShared(w *window, role string, verify bool) {
	ctx, cancel := context.WithTimeout(context.Background(), peerLockWait)
	defer cancel()
	if err := u.server.lockPeers(ctx, w, role); err != nil {
		u.log.Warn("resetting a person role without waiting for the other keygate servers", "role", role, "err", err)
	}
	u.atRest(w, role, verify)
	w.release()
}

// openLogin makes role loginable with a password only keygate knows, or
// joins a login window that is already open. Opening a window re-checks the
// role's shape, so a change made behind keygate's back is caught before
// anyone logs in with it.
func (u *Upstream) openLogin(ctx context.Context, w *window, role string, level access.Level) (string, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight == 0 {
		if err := u.server.lockPeers(ctx, w, role); err != nil {
			return "", 0, err
		}
		defer func() {
			if w.inflight == 0 {
				w.release()
			}
		}()
	}
	// The window is shared by every database on the server, but each
	// database's group membership is its own: a database joining an open
	// window still sets the role up for itself.
	if w.inflight == 0 || w.stale || !u.isReady(role) {
		if err := u.ensurePerson(ctx, role, level); err != nil {
			return "", 0, err
		}
	}
	if w.inflight == 0 || w.stale {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return "", 0, fmt.Errorf("login %q: %w", role, err)
		}
		password := base64.RawURLEncoding.EncodeToString(secret)
		verifier, err := scramVerifier(password)
		if err != nil {
			return "", 0, fmt.Errorf("login %q: %w", role, err)
		}
		until := time.Now().Add(loginWindow - u.clockOffset()).UTC().Format("2006-01-02 15:04:05.999999Z07:00")
		open := fmt.Sprintf("ALTER ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL %s", ident(role), literal(verifier), literal(until))
		if err := u.retryContended(ctx, func() error {
			_, err := u.admin.Exec(ctx, open)
			return err
		}); err != nil {
			return "", 0, u.adminErr(fmt.Sprintf("enable login for %q", role), err)
		}
		w.password, w.stale = password, false
		w.generation++
	}
	w.inflight++
	return w.password, w.generation, nil
}

// closeLogin leaves the login window; the last one out puts the role back
// at rest. Backends already logged in are not affected by NOLOGIN; when the
// last of them ends, released puts the role at rest once more.
func (u *Upstream) closeLogin(w *window, gen int, role string, dialErr error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if loginDisturbed(dialErr) && gen == w.generation {
		w.stale = true
	}
	w.inflight--
	if w.inflight > 0 {
		return
	}
	w.password = ""
	u.atRest(w, role, true)
	w.release()
	// A person who raced keygate for the password logs in while the window
	// is open: look now rather than at the next tick.
	u.server.poke()
}

// atRest sets role NOLOGIN with no password and a password expiry in the
// past, and checks that it took. The person can change their role's
// password from inside a session (PostgreSQL lets any role do that), and
// such a change makes keygate's reset fail with "tuple concurrently
// updated" when they collide; both are why the reset is retried and checked
// rather than run once; with verify, the reset and the check go in one
// round trip. An expired VALID UNTIL makes a password the person sets
// later useless even if the role were ever left LOGIN. Called with w.mu
// held.
func (u *Upstream) atRest(w *window, role string, verify bool) {
	// A fresh context: the caller's may be done, and the role must not
	// stay open.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reset := fmt.Sprintf("ALTER ROLE %s WITH NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'", ident(role))
	err := u.retryContended(ctx, func() error {
		if !verify {
			_, err := u.admin.Exec(ctx, reset)
			return err
		}
		var b pgx.Batch
		b.Queue(reset)
		b.Queue(`SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1`, role)
		res := u.admin.SendBatch(ctx, &b)
		defer res.Close()
		if _, err := res.Exec(); err != nil {
			return err
		}
		var canLogin bool
		if err := res.QueryRow().Scan(&canLogin); err != nil {
			return err
		}
		if canLogin {
			return errStillLogin
		}
		return nil
	})
	if err != nil {
		w.unreset = true
		u.log.Error("could not put a person role back to NOLOGIN; keygate keeps trying, and the role's password expires within a minute at most", "role", role, "err", err)
		return
	}
	w.unreset = false
}

var errStillLogin = errors.New("role is still LOGIN after the reset")

// retryContended runs f until it succeeds, retrying errors that a
// concurrent change of the same role causes, for up to ctx's deadline.
func (u *Upstream) retryContended(ctx context.Context, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !contended(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %d attempts)", err, attempt)
		case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 50*time.Millisecond)):
		}
	}
}

// contended reports whether err comes from a concurrent change of the same
// catalog row: "tuple concurrently updated" (XX000), a serialization
// failure, a deadlock or a lock timeout.
func contended(err error) bool {
	if errors.Is(err, errStillLogin) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01", "55P03":
		return true
	case "XX000":
		return pgErr.Message == "tuple concurrently updated"
	}
	return false
}

// released is told that keygate's backend of role ended. When it was the
// role's last and no login is under way, the role is put at rest again:
// whatever password the person set from inside the session goes with it.
func (u *Upstream) released(role string) {
	w := u.server.window(role)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight > 0 || u.server.liveBackends(role) > 0 {
		return
	}
	// Only the password can have changed since the window closed: a role
	// cannot make itself LOGIN.
	u.atRestShared(w, role, false)
}

// retryResets puts back at rest the roles whose reset failed.
func (u *Upstream) retryResets() {
	u.server.mu.Lock()
	roles := make(map[string]*window, len(u.server.windows))
	for role, w := range u.server.windows {
		roles[role] = w
	}
	u.server.mu.Unlock()
	for role, w := range roles {
		w.mu.Lock()
		if w.unreset && w.inflight == 0 {
			u.atRestShared(w, role, true)
		}
		w.mu.Unlock()
	}
}
