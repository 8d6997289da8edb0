package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// personClient is the API as a person's portal or CLI calls it: with their
// own sign-in session credential.
func (s *kgServer) personClient(t testing.TB, user string) *client.Client {
	t.Helper()
	c, err := client.New(s.apiURL, s.caFile, s.session(t, user))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// liveOf is user's one live session on db, from their own list.
func liveOf(t testing.TB, c *client.Client, user, db string) api.LiveSession {
	t.Helper()
	mine, err := c.MySessions(context.Background())
	if err != nil {
		t.Fatalf("GET /v1/sessions as %s: %v", user, err)
	}
	var found []api.LiveSession
	for _, ls := range mine.Live {
		if ls.User != user {
			t.Errorf("%s's list holds %s's live session %s", user, ls.User, ls.ID)
		}
		if ls.Database == db {
			found = append(found, ls)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s's live sessions on %s: %+v", user, db, mine.Live)
	}
	return found[0]
}

// lastOf is the last event of typ in the audit about user.
func lastOf(t testing.TB, s *kgServer, typ, user string) api.AuditEvent {
	t.Helper()
	return lastEvent(t, s.audit(t, "--type", typ, "--user", user, "--since", "1h"), typ, user)
}

// A person sees their live session with their own session credential and
// ends it: psql ends within a second, told who ended it, and the audit
// says so. Another person can neither see it nor end it. An administrator
// lists and ends anyone's with keygate admin live, as themselves, and the
// audit names them as actor.
func TestLiveSessionsEndedByPersonAndAdministrator(t *testing.T) {
	s := startServer(t, "live", administratorsConfig, true)
	s.addUser(t, "ann", "keygate-admins")
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "bob", "analysts")
	ctx := context.Background()
	alice, bob := s.personClient(t, "alice"), s.personClient(t, "bob")

	sl := s.startSleeper(t, "alice", "orders", s.token(t, "alice", "orders"), "live-alice-1")
	ls := liveOf(t, alice, "alice", "orders")
	if ls.Access != "ro" || ls.Engine != "postgres" || ls.SignIn == "" || ls.UpstreamRole == "" || ls.Statements < 1 || time.Since(ls.Started) > time.Minute {
		t.Errorf("alice's live session: %+v", ls)
	}
	mine, err := alice.MySessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.SignIns) != 1 || !mine.SignIns[0].Current || mine.SignIns[0].ID != ls.SignIn {
		t.Errorf("alice's sign-in sessions: %+v (the live one opened through %s)", mine.SignIns, ls.SignIn)
	}

	t.Run("another person can neither see nor end it", func(t *testing.T) {
		theirs, err := bob.MySessions(ctx)
		if err != nil || len(theirs.Live) != 0 {
			t.Fatalf("bob's live sessions: %+v %v", theirs.Live, err)
		}
		if _, err := bob.EndLive(ctx, ls.ID); !client.IsStatus(err, http.StatusNotFound) || !strings.Contains(err.Error(), "no live session "+ls.ID+" of yours") {
			t.Fatalf("bob ends alice's live session: %v", err)
		}
		if _, err := bob.EndSession(ctx, ls.SignIn); !client.IsStatus(err, http.StatusNotFound) {
			t.Fatalf("bob ends alice's sign-in session: %v", err)
		}
		if r := s.asPerson(t, s.session(t, "bob"), "admin", "live", "end", ls.ID); r.code == 0 || !strings.Contains(r.stderr, "bob"+notAdministrator) {
			t.Fatalf("keygate admin live end as bob: exit %d: %s", r.code, r.stderr)
		}
		select {
		case <-sl.exited:
			t.Fatalf("alice's session ended: %s", sl.stderr.String())
		default:
		}
	})

	t.Run("the person ends their own", func(t *testing.T) {
		asked := time.Now()
		ended, err := alice.EndLive(ctx, ls.ID)
		if err != nil || ended.ID != ls.ID {
			t.Fatalf("alice ends her live session: %+v %v", ended, err)
		}
		sl.endedWithin(t, "DELETE /v1/live/ was sent", asked, time.Second, "ended by alice")
		if ev := lastOf(t, s, "live.end", "alice"); ev.Actor != "alice" || ev.SessionID != ls.ID || ev.Reason != "ended by alice" {
			t.Errorf("live.end: %+v", ev)
		}
		waitFor(t, 5*time.Second, func() bool {
			return lastEvent(t, s.audit(t, "--type", "session.end", "--user", "alice", "--since", "1h"), "session.end", "alice").SessionID == ls.ID
		})
		if ev := lastOf(t, s, "session.end", "alice"); ev.Reason != "ended by alice" || ev.Detail["upstream_end"] != "terminated" {
			t.Errorf("session.end: %+v", ev)
		}
		if live := mustMine(t, alice).Live; len(live) != 0 {
			t.Errorf("alice's ended session is still listed: %+v", live)
		}
	})

	t.Run("an administrator ends anyone's", func(t *testing.T) {
		sl := s.startSleeper(t, "alice", "orders", s.token(t, "alice", "orders"), "live-alice-2")
		ann := s.session(t, "ann")
		r := s.asPerson(t, ann, "admin", "live", "list", "--user", "alice", "--db", "orders", "--json")
		if r.code != 0 {
			t.Fatalf("keygate admin live list as ann: exit %d: %s", r.code, r.stderr)
		}
		var listed []api.LiveSession
		if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 1 || listed[0].User != "alice" {
			t.Fatalf("keygate admin live list --json: %v %s", err, r.stdout)
		}
		id := listed[0].ID
		table := s.asPerson(t, ann, "admin", "live", "list")
		mustContain(t, "keygate admin live list", table.stdout, "STATEMENTS")
		mustContain(t, "keygate admin live list", table.stdout, id)

		r = s.asPerson(t, ann, "admin", "live", "end", id)
		returned := time.Now()
		if r.code != 0 || !strings.Contains(r.stdout, "ended live session "+id+" of alice on orders") {
			t.Fatalf("keygate admin live end as ann: exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
		sl.endedWithin(t, "keygate admin live end returned", returned, time.Second, "ended by administrator ann")
		if ev := lastOf(t, s, "admin.live.end", "alice"); ev.Actor != "ann" || ev.Detail["session_id"] != id || ev.Detail["actor_session"] == nil {
			t.Errorf("admin.live.end: %+v", ev)
		}
		waitFor(t, 5*time.Second, func() bool {
			return lastEvent(t, s.audit(t, "--type", "session.end", "--user", "alice", "--since", "1h"), "session.end", "alice").SessionID == id
		})
		if ev := lastOf(t, s, "session.end", "alice"); ev.Reason != "ended by administrator ann" {
			t.Errorf("session.end: %+v", ev)
		}
		if r := s.asPerson(t, ann, "admin", "live", "end", id); r.code == 0 || !strings.Contains(r.stderr, "no live session "+id) {
			t.Errorf("ending it again: exit %d: %s", r.code, r.stderr)
		}
	})
}

// mustMine is the person's own sessions, or fails the test.
func mustMine(t testing.TB, c *client.Client) api.MySessions {
	t.Helper()
	mine, err := c.MySessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return mine
}
