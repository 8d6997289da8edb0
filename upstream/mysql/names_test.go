package mysql

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/access"
)

func TestUserNameShort(t *testing.T) {
	if got := UserName("alice", access.ReadOnly); got != "alice.ro" {
		t.Fatalf("UserName = %q, want alice.ro", got)
	}
	if got := RoleName("orders", access.Admin); got != "keygate_orders_admin" {
		t.Fatalf("RoleName = %q, want keygate_orders_admin", got)
	}
	// Exactly at the limit: kept as is.
	exact := strings.Repeat("a", MaxNameLen-len(".rw"))
	if got := UserName(exact, access.ReadWrite); got != exact+".rw" {
		t.Fatalf("UserName at the limit = %q", got)
	}
}

func TestUserNameLongIsStableAndFits(t *testing.T) {
	long := "christopher.montgomery-worthington@example.com"
	for _, l := range access.Levels {
		got := UserName(long, l)
		if utf8.RuneCountInString(got) > MaxNameLen {
			t.Fatalf("UserName(%q, %s) = %q: %d characters, over %d", long, l, got, utf8.RuneCountInString(got), MaxNameLen)
		}
		if !strings.HasPrefix(got, "christopher.") || !strings.HasSuffix(got, "."+string(l)) || !strings.Contains(got, "~") {
			t.Fatalf("UserName(%q, %s) = %q: want the name's start, ~hash and the level", long, l, got)
		}
		if again := UserName(long, l); again != got {
			t.Fatalf("UserName is not stable: %q then %q", got, again)
		}
	}
	// A fixed expectation, so that a change of the mapping (which would
	// orphan every existing long-named user) fails here.
	if got, want := UserName(long, access.ReadOnly), "christopher.montgo~943f596f49.ro"; got != want {
		t.Fatalf("UserName = %q, want %q", got, want)
	}
	// Two names that share the kept prefix still differ.
	other := "christopher.montgomery-worthington@example.org"
	if UserName(long, access.ReadOnly) == UserName(other, access.ReadOnly) {
		t.Fatalf("two long names map to the same user %q", UserName(long, access.ReadOnly))
	}
}

func TestUserNameCountsCharacters(t *testing.T) {
	name := strings.Repeat("é", 40)
	got := UserName(name, access.Admin)
	if !utf8.ValidString(got) || utf8.RuneCountInString(got) != MaxNameLen {
		t.Fatalf("UserName = %q (%d characters): want valid UTF-8 of exactly %d characters", got, utf8.RuneCountInString(got), MaxNameLen)
	}
}

func TestRoleNameLong(t *testing.T) {
	got := RoleName("a_database_with_a_rather_long_name", access.Admin)
	if utf8.RuneCountInString(got) > MaxNameLen || !strings.HasSuffix(got, "_admin") || !strings.HasPrefix(got, "keygate_") {
		t.Fatalf("RoleName = %q", got)
	}
}
