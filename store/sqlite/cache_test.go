package sqlite

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

func openCached(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "keygate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// What the gateway reads to authorize a connection is cached, and every
// write replaces it at once: a disabled person, a membership removed or a
// sign-in session revoked is what the next read says.
func TestReadCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := openCached(t)
	u, err := s.CreateUser(ctx, identity.User{UserName: "Ana", Active: true, Attributes: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, identity.Group{Name: "analysts"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddMember(ctx, g.ID, u.ID, "test"); err != nil {
		t.Fatal(err)
	}
	sess, err := s.CreateSession(ctx, identity.Session{User: "Ana", Expires: time.Now().Add(time.Hour), Groups: []string{"x"}}, []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second round reads from the cache
		got, err := s.GetUserByName(ctx, "ana")
		if err != nil || !got.Active {
			t.Fatalf("GetUserByName = %+v, %v", got, err)
		}
		got.Attributes["team"] = "changed by a caller"
		if gs, err := s.GroupsOf(ctx, u.ID); err != nil || len(gs) != 1 {
			t.Fatalf("GroupsOf = %v, %v", gs, err)
		}
		ss, err := s.GetSession(ctx, sess.ID)
		if err != nil || !ss.Revoked.IsZero() {
			t.Fatalf("GetSession = %+v, %v", ss, err)
		}
		ss.Groups[0] = "changed by a caller"
	}
	if got, _ := s.GetUserByName(ctx, "ANA"); got.Attributes["team"] != "a" {
		t.Errorf("a caller's change to a returned user reached the next read: %v", got.Attributes)
	}
	if ss, _ := s.GetSession(ctx, sess.ID); ss.Groups[0] != "x" {
		t.Errorf("a caller's change to a returned session reached the next read: %v", ss.Groups)
	}

	if _, err := s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { u.Active = false; return u, nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUserByName(ctx, "ana"); got.Active {
		t.Error("a disabled person reads as active")
	}
	if err := s.RemoveMember(ctx, g.ID, u.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if gs, _ := s.GroupsOf(ctx, u.ID); len(gs) != 0 {
		t.Errorf("a removed membership still reads: %v", gs)
	}
	if err := s.RevokeSession(ctx, sess.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ss, _ := s.GetSession(ctx, sess.ID); ss.Revoked.IsZero() {
		t.Error("a revoked sign-in session reads as live")
	}
}

// Names that SQLite's NOCASE tells apart (it folds ASCII letters only)
// never share a cache entry.
func TestReadCacheKeepsNamesApart(t *testing.T) {
	ctx := context.Background()
	s := openCached(t)
	for _, name := range []string{"Émile", "émile"} {
		if _, err := s.CreateUser(ctx, identity.User{UserName: name, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, name := range []string{"Émile", "émile"} {
			if got, err := s.GetUserByName(ctx, name); err != nil || got.UserName != name {
				t.Fatalf("GetUserByName(%q) = %q, %v", name, got.UserName, err)
			}
		}
	}
}

// A reader that hears of a change on the feed reads what the change wrote
// or something newer, however reads and writes interleave: a read that
// raced a write is never cached over it.
func TestReadCacheNeverOlderThanTheFeed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openCached(t)
	u, err := s.CreateUser(ctx, identity.User{UserName: "vic", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	changes := s.Watch(ctx)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 { // readers that fill the cache as writes go on
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s.GetUserByName(ctx, "vic")
			}
		}()
	}
	const writes = 100
	written := make(chan int64, writes)
	go func() {
		for range writes {
			v, err := s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { u.Active = !u.Active; return u, nil })
			if err != nil {
				t.Error(err)
				return
			}
			written <- v.Version
		}
	}()
	for range writes {
		var c store.Change
		select {
		case c = <-changes:
		case <-time.After(10 * time.Second):
			t.Fatal("no change on the feed")
		}
		if c.Kind == store.Resync {
			continue
		}
		want := <-written
		got, err := s.GetUserByName(ctx, "vic")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version < want {
			t.Fatalf("after hearing of version %d, read version %d", want, got.Version)
		}
	}
	close(stop)
	wg.Wait()
}
