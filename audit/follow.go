package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Reader is the part of the store that reading the log as it grows needs.
type Reader interface {
	Lister
	LastAudit(ctx context.Context) (store.AuditEvent, error)
}

// Page returns the events that match q after q.AfterSeq (at most q.Limit,
// oldest first) and the cursor to pass as AfterSeq next time. The cursor
// moves past the events that did not match too, up to the newest event
// stored when Page began, so that someone following a rare event does not
// scan the whole log again on every call.
func Page(ctx context.Context, r Reader, q store.AuditQuery) ([]store.AuditEvent, int64, error) {
	// The head is read before the list: every event up to it is stored by
	// then, so the list sees them all and the cursor never skips one.
	last, err := r.LastAudit(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, q.AfterSeq, nil
	case err != nil:
		return nil, q.AfterSeq, fmt.Errorf("read audit log: %w", err)
	case last.Seq <= q.AfterSeq:
		return nil, q.AfterSeq, nil
	}
	events, err := r.ListAudit(ctx, q)
	if err != nil {
		return nil, q.AfterSeq, fmt.Errorf("read audit log: %w", err)
	}
	if n := len(events); q.Limit > 0 && n == q.Limit {
		// A full page: more may match before the head.
		return events, events[n-1].Seq, nil
	}
	cursor := last.Seq
	if n := len(events); n > 0 {
		cursor = max(cursor, events[n-1].Seq)
	}
	return events, cursor, nil
}

// Wait is Page that, while nothing matches, looks again every poll until
// something does, ctx ends or stop is closed. Ending that way is not an
// error: it returns no events and the cursor reached.
func Wait(ctx context.Context, r Reader, q store.AuditQuery, poll time.Duration, stop <-chan struct{}) ([]store.AuditEvent, int64, error) {
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		events, cursor, err := Page(ctx, r, q)
		if ctx.Err() != nil {
			return nil, q.AfterSeq, nil
		}
		if err != nil || len(events) > 0 {
			return events, cursor, err
		}
		q.AfterSeq = cursor
		t.Reset(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, cursor, nil
		case <-stop:
			return nil, cursor, nil
		}
	}
}
