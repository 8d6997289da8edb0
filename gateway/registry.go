package gateway

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
)

// EngineOptions are what every engine is made with.
type EngineOptions struct {
	Gateway *Gateway
	// TLS returns the configuration for a new client connection, so that
	// a renewed certificate applies without a restart.
	TLS func() *tls.Config
	// Upstreams maps the keygate names of the engine's databases to what
	// its upstream driver opened for each; the engine asserts its own type.
	Upstreams map[string]any
	// MaxStatement is the longest statement text the audit keeps whole
	// (audit.max_statement_size); TruncateOversized runs longer ones with
	// their head, tail, length and hash in the audit instead of refusing
	// them (audit.oversized_statements: truncate).
	MaxStatement      int
	TruncateOversized bool
}

// EngineFactory makes an engine.
type EngineFactory func(EngineOptions) (Engine, error)

var (
	enginesMu sync.RWMutex
	engines   = map[string]EngineFactory{}
)

// RegisterEngine makes an engine available by name, the name a database's
// engine: says in the config. Engines register in their package's init;
// registering a name twice, or a nil factory, panics, as
// database/sql.Register does.
func RegisterEngine(name string, f EngineFactory) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if f == nil {
		panic("gateway: RegisterEngine factory is nil")
	}
	if _, dup := engines[name]; dup {
		panic("gateway: RegisterEngine called twice for engine " + name)
	}
	engines[name] = f
}

// NewEngine makes the engine registered as name.
func NewEngine(name string, o EngineOptions) (Engine, error) {
	enginesMu.RLock()
	f, ok := engines[name]
	enginesMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no engine %q in this keygate (it has %v)", name, Engines())
	}
	e, err := f(o)
	if err != nil {
		return nil, fmt.Errorf("engine %s: %w", name, err)
	}
	return e, nil
}

// Engines lists the registered engines' names, sorted.
func Engines() []string {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	names := make([]string, 0, len(engines))
	for name := range engines {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// UpstreamsOf asserts that every upstream in o is the engine's type T,
// the interface the engine needs of its databases, as each engine's
// factory must: an upstream opened by another engine's provisioner is a
// wiring error, named by database.
func UpstreamsOf[T any](o EngineOptions, engine string) (map[string]T, error) {
	ups := make(map[string]T, len(o.Upstreams))
	for name, u := range o.Upstreams {
		t, ok := u.(T)
		if !ok {
			return nil, fmt.Errorf("database %s: %T is not a %s upstream", name, u, engine)
		}
		ups[name] = t
	}
	return ups, nil
}
