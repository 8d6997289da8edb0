package mysql

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/access"
)

// WithLogin opens person's login window at level for one connection
// attempt: it sets up the person's user if needed, gives it a fresh random
// password and unlocks it, calls dial with the user name and password, and
// locks the account again with another random password, whether dial
// succeeded or not. dial must call Opened with the connection's thread id
// before it returns, or the watcher takes the connection for an intrusion.
//
// Windows of one user do not overlap: a second login of the same person
// waits for the first one's handshake (milliseconds). The session dial
// opened outlives the lock; it must run SetRoleStatement first.
func (u *Upstream) WithLogin(ctx context.Context, person string, level access.Level, dial func(user, password string) error) error {
	if err := u.checked(ctx); err != nil {
		return err
	}
	user := UserName(person, level)
	w := u.server.window(user)
	w.Lock()
	defer w.Unlock()
	unlock, err := u.server.lockPeers(ctx, user)
	if err != nil {
		return fmt.Errorf("login %q: wait for the other keygate servers' login window: %w", user, err)
	}
	defer unlock()
	if err := u.ensurePerson(ctx, person, user, level); err != nil {
		return err
	}
	password, err := randomPassword()
	if err != nil {
		return fmt.Errorf("login %q: %w", user, err)
	}
	u.server.opening(user, true)
	defer u.server.opening(user, false)
	open := fmt.Sprintf("ALTER USER %s IDENTIFIED BY PASSWORD %s ACCOUNT UNLOCK", account(user), quoteString(nativeHash(password)))
	if err := u.exec(ctx, "open login window for "+user, open); err != nil {
		// The statement may have taken effect before the error.
		u.atRest(user)
		return err
	}
	dialErr := dial(user, password)
	if err := u.atRest(user); err != nil && dialErr == nil {
		// The session is up but the account could not be locked: keygate
		// keeps trying from the watcher; the session itself is fine.
		u.log.Error("could not lock a person user after login; keygate keeps trying", "user", user, "err", err)
	}
	if dialErr != nil {
		return fmt.Errorf("login %q: %w", user, dialErr)
	}
	return nil
}

// lockPeers takes user's login window from the other keygate servers
// sharing this one's state, if there are any: they take it in turn, so
// that none changes the password or locks the account under another's
// login.
func (s *server) lockPeers(ctx context.Context, user string) (unlock func(), err error) {
	if s.peers == nil {
		return func() {}, nil
	}
	return s.peers.LockWindow(ctx, s.address, user)
}

// atRest locks user with a random password nobody knows, and checks that
// the lock took: a password the person sets from inside a session then
// opens nothing. On failure the watcher tries again on every sweep.
func (u *Upstream) atRest(user string) error {
	// A fresh context: the caller's may be done, and the account must not
	// stay open.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := u.lock(ctx, user)
	u.server.setUnreset(user, u, err != nil)
	return err
}

func (u *Upstream) lock(ctx context.Context, user string) error {
	hash, err := randomHash()
	if err != nil {
		return err
	}
	stmt := fmt.Sprintf("ALTER USER %s IDENTIFIED BY PASSWORD %s ACCOUNT LOCK", account(user), quoteString(hash))
	if err := u.exec(ctx, "lock "+user, stmt); err != nil {
		return err
	}
	locked, err := u.locked(ctx, user)
	if err != nil {
		return err
	}
	if !locked {
		return fmt.Errorf("lock %s: the account is still unlocked after ALTER USER ... ACCOUNT LOCK", user)
	}
	return nil
}

// locked reads back whether user's account is locked.
func (u *Upstream) locked(ctx context.Context, user string) (bool, error) {
	var create string
	if err := u.admin.QueryRowContext(ctx, "SHOW CREATE USER "+account(user)).Scan(&create); err != nil {
		return false, u.adminErr("read back "+user, err)
	}
	return strings.Contains(create, "ACCOUNT LOCK"), nil
}

// nativeHash is mysql_native_password's stored form of password:
// "*" and the upper-case hex of SHA1(SHA1(password)). keygate sends this,
// never the password, so the server's general and error logs cannot show
// the password itself. The hash alone does not log in (the client proves
// it knows SHA1(password)); it would take the hash and a recording of the
// login's handshake, which TLS hides, and the window lasts milliseconds.
func nativeHash(password string) string {
	first := sha1.Sum([]byte(password))
	second := sha1.Sum(first[:])
	return "*" + strings.ToUpper(hex.EncodeToString(second[:]))
}

// randomPassword is 256 random bits, URL-safe.
func randomPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// randomHash is the hash of a random password that is thrown away: what a
// person user holds at rest.
func randomHash() (string, error) {
	p, err := randomPassword()
	if err != nil {
		return "", err
	}
	return nativeHash(p), nil
}
