// Package token mints and verifies keygate's short-lived database tokens:
// PASETO v4.public (Ed25519), bound to one person, one database and one access
// level. A token is the database password; the gateway verifies it and asks
// the access decision again before it opens anything upstream.
//
// PASETO fixes the algorithm per version, so there is no algorithm field to
// confuse. The footer carries a key id so that keys can be rotated while
// tokens signed with the previous key are still in flight.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"aidanwoods.dev/go-paseto"

	"github.com/keygate/keygate/access"
)

// Prefix starts every keygate database token.
const Prefix = "v4.public."

// MaxLen bounds the tokens the verifier will look at; a real token is a few
// hundred bytes.
const MaxLen = 4096

// implicit binds a signature to its purpose, so that no other PASETO signed
// with the same key could be replayed as a database token.
var implicit = []byte("keygate database token v1")

// Claims is what a token says.
type Claims struct {
	ID       string       // unique per token, for audit correlation
	User     string       // the person
	Database string       // the keygate database name
	Access   access.Level // the access level
	Session  string       // the sign-in session that asked for it
	IssuedAt time.Time
	Expires  time.Time
}

// Errors returned by Verify. Their text is safe to show to the client and to
// write to the audit log: it never contains the token.
var (
	ErrMalformed    = errors.New("token is malformed")
	ErrUnknownKey   = errors.New("token is signed by an unknown key")
	ErrBadSignature = errors.New("token signature is invalid")
	ErrExpired      = errors.New("token has expired")
	ErrNotYetValid  = errors.New("token is not valid yet")
)

// LooksLikeToken reports whether s has the shape of a keygate token.
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, Prefix) }

// Mentions reports whether s contains anything shaped like a keygate token,
// so that callers can keep a token pasted into the wrong field, with or
// without something around it, out of logs and messages.
func Mentions(s string) bool { return strings.Contains(s, Prefix) }

// Issuer mints tokens with the current key of a key set.
type Issuer struct {
	Keys *KeySet
	Now  func() time.Time
}

// Mint signs a token for c, filling in ID and IssuedAt. c.Expires must be set.
func (i *Issuer) Mint(c Claims) (string, Claims, error) {
	key := i.Keys.current(i.Now())
	if c.ID == "" {
		c.ID = newID()
	}
	c.IssuedAt = i.Now().UTC().Truncate(time.Second)
	c.Expires = c.Expires.UTC().Truncate(time.Second)
	if !c.Expires.After(c.IssuedAt) {
		return "", Claims{}, fmt.Errorf("mint token: expiry %s is not after issue time %s", c.Expires, c.IssuedAt)
	}
	t := paseto.NewToken()
	t.SetJti(c.ID)
	t.SetSubject(c.User)
	t.SetIssuer("keygate")
	t.SetIssuedAt(c.IssuedAt)
	t.SetNotBefore(c.IssuedAt)
	t.SetExpiration(c.Expires)
	t.SetString("db", c.Database)
	t.SetString("access", string(c.Access))
	t.SetString("sid", c.Session)
	footer, err := json.Marshal(footer{KeyID: key.id})
	if err != nil {
		return "", Claims{}, fmt.Errorf("mint token: %w", err)
	}
	t.SetFooter(footer)
	return t.V4Sign(key.secret, implicit), c, nil
}

type footer struct {
	KeyID string `json:"kid"`
}

// Verifier checks tokens against the verification keys of a key set.
type Verifier struct {
	Keys *KeySet
	Now  func() time.Time
	// Leeway tolerates small clock differences on not-before.
	Leeway time.Duration

	// verified remembers the claims of tokens whose signature checked:
	// a person's tools connect many times with one token, and the
	// signature check is most of Verify's cost.
	verified verifiedCache
}

// Verify checks a token's shape, key, signature and validity window and
// returns its claims. It does not decide access: callers ask access.Decide
// with the claims. A token seen before skips the signature check, never
// the others: its key must still verify and its window must hold now.
func (v *Verifier) Verify(tok string) (Claims, error) {
	if len(tok) > MaxLen || !LooksLikeToken(tok) {
		return Claims{}, ErrMalformed
	}
	sum := sha256.Sum256([]byte(tok))
	if c, kid, ok := v.verified.get(sum); ok {
		if _, ok := v.Keys.verificationKey(kid); ok {
			return v.inWindow(c)
		}
		v.verified.drop(sum)
	}
	c, kid, err := v.verify(tok)
	if err != nil {
		return Claims{}, err
	}
	if c, err = v.inWindow(c); err != nil {
		return Claims{}, err
	}
	v.verified.put(sum, c, kid, v.Now())
	return c, nil
}

// inWindow checks the validity window of c now.
func (v *Verifier) inWindow(c Claims) (Claims, error) {
	now := v.Now()
	if !now.Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	if now.Add(v.Leeway).Before(c.IssuedAt) {
		return Claims{}, ErrNotYetValid
	}
	return c, nil
}

// verify checks a token's key and signature and returns its claims and
// the id of the key that signed it.
func (v *Verifier) verify(tok string) (Claims, string, error) {
	raw, err := paseto.NewParserWithoutExpiryCheck().UnsafeParseFooter(paseto.V4Public, tok)
	if err != nil {
		return Claims{}, "", ErrMalformed
	}
	var f footer
	if err := json.Unmarshal(raw, &f); err != nil || f.KeyID == "" {
		return Claims{}, "", ErrMalformed
	}
	pub, ok := v.Keys.verificationKey(f.KeyID)
	if !ok {
		return Claims{}, "", ErrUnknownKey
	}
	parser := paseto.MakeParser(nil)
	t, err := parser.ParseV4Public(pub, tok, implicit)
	if err != nil {
		return Claims{}, "", ErrBadSignature
	}
	c, err := claimsOf(t)
	if err != nil {
		return Claims{}, "", err
	}
	return c, f.KeyID, nil
}

func claimsOf(t *paseto.Token) (Claims, error) {
	var c Claims
	var err error
	str := func(key string) string {
		s, e := t.GetString(key)
		if e != nil {
			err = ErrMalformed
		}
		return s
	}
	c.ID = str("jti")
	c.User = str("sub")
	c.Database = str("db")
	c.Access = access.Level(str("access"))
	c.Session = str("sid")
	if err != nil {
		return Claims{}, err
	}
	if c.IssuedAt, err = t.GetIssuedAt(); err != nil {
		return Claims{}, ErrMalformed
	}
	if c.Expires, err = t.GetExpiration(); err != nil {
		return Claims{}, ErrMalformed
	}
	if _, err := access.ParseLevel(string(c.Access)); err != nil || c.User == "" || c.Database == "" {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
