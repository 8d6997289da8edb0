package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Past shutdown_grace, a stopping server takes at most stopBound more,
// whatever it waits on: a session whose upstream does not answer, an HTTP
// client that does not read, an audit store that hangs. An operator's
// SIGTERM, or an orchestrator's, must end the process; what could not be
// finished is logged, and audit events go to a spill file.
const stopBound = 10 * time.Second

// Deadlines of the stopping steps, after shutdown_grace.
const (
	// drainExtra is how long ending the sessions left after the grace
	// may take.
	drainExtra = 3 * time.Second
	// watchersBy is when the change-feed watchers must have stopped.
	watchersBy = 4 * time.Second
	// auditBy is when the audit log must have stored what is queued, or
	// spilled it; the audit log may take a second more to take the work
	// over from a writer stuck in the store.
	auditBy = 7 * time.Second
)

// stop drains and closes the server, returning within grace+stopBound.
// stopWatchers stops the change-feed watchers and waits for them.
func (s *Server) stop(grace time.Duration, stopWatchers func()) {
	start := time.Now()
	var step atomic.Value
	step.Store("")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.stopSteps(start, grace, stopWatchers, func(name string) { step.Store(name) })
	}()
	t := time.NewTimer(grace + stopBound)
	defer t.Stop()
	select {
	case <-done:
		s.log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	case <-t.C:
		s.log.Error("stopping anyway: shutdown did not finish in time", "waiting_on", step.Load(), "after", time.Since(start).Round(time.Millisecond))
	}
}

// stopSteps stops the server's parts in order, each with a deadline
// counted from start, telling at which it is.
func (s *Server) stopSteps(start time.Time, grace time.Duration, stopWatchers func(), at func(step string)) {
	at("gateway listeners")
	s.pgLn.Close()
	if s.myLn != nil {
		s.myLn.Close()
	}

	at("live sessions and API requests")
	graceCtx, cancel := context.WithDeadline(context.Background(), start.Add(grace))
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if s.http.Shutdown(graceCtx) != nil {
			// Requests still running after the grace are cut.
			s.http.Close()
		}
	})
	wg.Go(func() { s.gw.Drain(graceCtx) })
	waitUntil(&wg, start.Add(grace+drainExtra))
	if s.metricsHTTP != nil {
		// Last, so that scrapes during the drain see sessions end.
		at("metrics listener")
		var mw sync.WaitGroup
		mw.Go(func() {
			ctx, cancel := context.WithDeadline(context.Background(), start.Add(grace+drainExtra))
			defer cancel()
			if s.metricsHTTP.Shutdown(ctx) != nil {
				s.metricsHTTP.Close()
			}
		})
		waitUntil(&mw, start.Add(grace+drainExtra+time.Second))
	}

	at("change feed watchers")
	var ww sync.WaitGroup
	ww.Go(stopWatchers)
	waitUntil(&ww, start.Add(grace+watchersBy))

	at("audit log")
	auditCtx, cancelAudit := context.WithDeadline(context.Background(), start.Add(grace+auditBy))
	defer cancelAudit()
	// The chain's end is signed, so that an export taken now is vouched
	// for to its last event.
	if err := s.audit.Checkpoint(auditCtx, s.auditKey); err != nil {
		s.log.Error("could not add an audit checkpoint at shutdown", "err", err)
	}
	// Shutdown logs a spill file itself; its error says events reached
	// only the server log, which it also logged.
	s.audit.Shutdown(auditCtx, s.cfg.Resolve(s.cfg.DataDir))

	at("closing the state")
	s.close()
}

// waitUntil waits for wg, or until deadline.
func waitUntil(wg *sync.WaitGroup, deadline time.Time) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
