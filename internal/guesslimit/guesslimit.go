// Package guesslimit slows down guessing of secrets (provisioning tokens,
// sign-in codes): each source may fail burst times, then once per interval.
// While a source is over its limit every request from it is refused before
// what it presents is looked at, so a correct guess is refused too.
package guesslimit

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limiter counts failures by source.
type Limiter struct {
	burst    float64
	interval time.Duration

	mu      sync.Mutex
	sources map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxSources bounds the memory the limiter can be made to use.
const maxSources = 100_000

// New makes a Limiter that allows burst failures, then one per interval.
func New(burst int, interval time.Duration) *Limiter {
	return &Limiter{burst: float64(burst), interval: interval, sources: map[string]*bucket{}}
}

// Source is the address a request came from, without its port.
func Source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Allowed reports whether source may try to authenticate now, and if not,
// how long it must wait.
func (l *Limiter) Allowed(source string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(source, now)
	if b == nil || b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.interval))
}

// Failed charges source for a failed attempt.
func (l *Limiter) Failed(source string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(source, now)
	if b == nil {
		if len(l.sources) >= maxSources {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.sources[source] = b
	}
	b.tokens--
}

func (l *Limiter) refill(source string, now time.Time) *bucket {
	b := l.sources[source]
	if b == nil {
		return nil
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.interval))
	b.at = now
	return b
}

// prune forgets sources that have recovered their whole burst.
func (l *Limiter) prune(now time.Time) {
	for s, b := range l.sources {
		if b.tokens+float64(now.Sub(b.at))/float64(l.interval) >= l.burst {
			delete(l.sources, s)
		}
	}
}
