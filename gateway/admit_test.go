package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/token"
)

// connectorFunc is a Connector made of a function.
type connectorFunc func(ctx context.Context, db string, d access.Decision, c token.Claims) (*Session, error)

func (f connectorFunc) Connect(ctx context.Context, db string, d access.Decision, c token.Claims) (*Session, error) {
	return f(ctx, db, d, c)
}

// Admit is the one way in for every engine: it refuses what the token or
// the engine refuses, auditing each refusal with the token's id and level,
// registers what it admits with the decision's person and grant, and ends
// the backend of a session it could not register.
func TestAdmit(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "alice", "orders", time.Hour)
	hello := Hello{User: "alice", Database: "orders", Token: tok, Client: "10.0.0.9:5000"}
	ctx := context.Background()

	var connects int
	_, err := f.gw.Admit(ctx, Hello{User: "alice", Database: "orders", Token: "v4.public.forged", Client: "c"},
		connectorFunc(func(context.Context, string, access.Decision, token.Claims) (*Session, error) {
			connects++
			return nil, nil
		}))
	var r *Refusal
	if !errors.As(err, &r) || r.Kind != RefusedCredentials || connects != 0 {
		t.Fatalf("bad token: %v, %d upstream logins", err, connects)
	}

	for _, tc := range []struct {
		name   string
		err    error
		kind   RefusalKind
		reason string
	}{
		{"unknown database", ErrUnknownDatabase, RefusedAccess, "database orders is not configured in keygate"},
		{"engine's own reason", &Refusal{Kind: RefusedUnavailable, Reason: "database orders is unavailable right now"}, RefusedUnavailable, "database orders is unavailable right now"},
		{"other failure", errors.New("dial tcp: refused"), RefusedUnavailable, "keygate could not log you in to orders upstream; the keygate log says why"},
	} {
		before := len(f.audit.OfType(audit.ConnectRefused))
		_, err := f.gw.Admit(ctx, hello, connectorFunc(func(_ context.Context, db string, d access.Decision, c token.Claims) (*Session, error) {
			if db != "orders" || d.User != "alice" || c.Access != access.ReadOnly {
				t.Errorf("%s: Connect(%q, %+v, %+v)", tc.name, db, d, c)
			}
			return nil, tc.err
		}))
		if !errors.As(err, &r) || r.Kind != tc.kind || r.Reason != tc.reason {
			t.Errorf("%s: %v, want %v %q", tc.name, err, tc.kind, tc.reason)
		}
		refused := f.audit.OfType(audit.ConnectRefused)
		if len(refused) != before+1 {
			t.Fatalf("%s: %d refusals audited, want %d", tc.name, len(refused), before+1)
		}
		if e := refused[len(refused)-1]; e.Reason != tc.reason || e.Access != "ro" || e.Detail["token_id"] == "" || e.Client != hello.Client {
			t.Errorf("%s: audited %+v", tc.name, e)
		}
	}

	admitted, err := f.gw.Admit(ctx, hello, connectorFunc(func(context.Context, string, access.Decision, token.Claims) (*Session, error) {
		return &Session{Engine: "test", Client: hello.Client, Control: &control{}}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if admitted.User != "alice" || admitted.Database != "orders" || admitted.Level != access.ReadOnly || admitted.SignIn != "s-alice" || admitted.TokenID == "" || admitted.ID == "" {
		t.Fatalf("admitted %+v", admitted)
	}
	if n := f.gw.SessionCount(); n != 1 {
		t.Fatalf("%d live sessions", n)
	}

	// Shutting down: the session is not registered, and its backend is
	// ended before its end is audited.
	f.gw.mu.Lock()
	f.gw.draining = true
	f.gw.mu.Unlock()
	aborted := false
	_, err = f.gw.Admit(ctx, hello, connectorFunc(func(context.Context, string, access.Decision, token.Claims) (*Session, error) {
		return &Session{Engine: "test", Control: &abortRecorder{aborted: &aborted}}, nil
	}))
	if !errors.As(err, &r) || r.Reason != "keygate is shutting down" || !aborted {
		t.Fatalf("admitted while shutting down: %v, backend ended %t", err, aborted)
	}
	if ends := f.audit.OfType(audit.SessionEnd); len(ends) != 1 || ends[0].Reason != "keygate is shutting down" {
		t.Fatalf("session.end = %+v", ends)
	}
}

type abortRecorder struct {
	control
	aborted *bool
}

func (a *abortRecorder) Abort() BackendEnd {
	*a.aborted = true
	return BackendEnd{How: BackendTerminated, At: time.Now()}
}
