package identity

import (
	"testing"
	"time"
)

func TestEndedByDeactivation(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sessions := []Session{
		{ID: "with-the-change", Revoked: at},
		{ID: "revoked-before", Revoked: at.Add(-time.Hour)},
		{ID: "never-revoked"},
	}
	active, inactive := User{Active: true, Modified: at}, User{Active: false, Modified: at}
	for _, tc := range []struct {
		name          string
		before, after User
		want          int
	}{
		{"disabled", active, inactive, 1},
		{"enabled", inactive, active, 0},
		{"stays active", active, active, 0},
		{"stays disabled", inactive, inactive, 0},
	} {
		got := EndedByDeactivation(tc.before, tc.after, sessions)
		if len(got) != tc.want || tc.want == 1 && got[0].ID != "with-the-change" {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
}
