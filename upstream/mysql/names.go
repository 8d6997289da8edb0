package mysql

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"github.com/keygate/keygate/access"
)

// MaxNameLen is the longest user or role name keygate creates, in
// characters: MySQL 8's limit (MariaDB allows 80; one rule serves both, so
// a database can move between them without renaming anyone).
const MaxNameLen = 32

// hashLen is how many hex digits of SHA-256 a shortened name carries:
// 40 bits, so two long names colliding is not a practical concern.
const hashLen = 10

// UserName is the upstream user a person logs in as at a level:
// "alice.ro". A name longer than MaxNameLen keeps as much of the person's
// name as fits, then "~" and a hash of the whole name, then the level
// ("averyveryveryve~1a2b3c4d5e.admin"), so that PROCESSLIST and audit
// still show who it is and at which level, and the same person always maps
// to the same user.
func UserName(person string, level access.Level) string {
	return shorten(person, "."+string(level))
}

// RoleName is the role that holds a level's privileges on keygate's
// database db: "keygate_orders_ro", shortened as UserName is.
func RoleName(db string, level access.Level) string {
	return shorten("keygate_"+db, "_"+string(level))
}

// shorten returns name+suffix when it fits in MaxNameLen characters, and
// otherwise a prefix of name, "~", a hash of name and suffix.
func shorten(name, suffix string) string {
	if utf8.RuneCountInString(name)+utf8.RuneCountInString(suffix) <= MaxNameLen {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	tail := "~" + hex.EncodeToString(sum[:])[:hashLen] + suffix
	keep := MaxNameLen - utf8.RuneCountInString(tail)
	var b strings.Builder
	for i, r := range []rune(name) {
		if i == keep {
			break
		}
		b.WriteRune(r)
	}
	return b.String() + tail
}
