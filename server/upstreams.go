package server

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/upstream"
)

// Upstreams are the configured databases, opened through their engines'
// provisioners.
type Upstreams struct {
	// Databases are by keygate database name.
	Databases map[string]upstream.Database
	// Provisioners are one per engine the config uses.
	Provisioners map[string]upstream.Provisioner
	engineOf     map[string]string
}

// OpenUpstreams opens every database of cfg through its engine's
// provisioner, one provisioner per engine, with the admin password from
// the variable admin.password_env names (a database whose variable is not
// set is logged, and tried without one). Nothing connects yet.
func OpenUpstreams(cfg *config.Config, o upstream.Options) (Upstreams, error) {
	u := Upstreams{Databases: map[string]upstream.Database{}, Provisioners: map[string]upstream.Provisioner{}, engineOf: map[string]string{}}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, d := range cfg.Databases {
		password, ok := os.LookupEnv(d.Admin.PasswordEnv)
		if !ok {
			o.Log.Warn("admin password variable is not set; connecting without a password", "database", d.Name, "variable", d.Admin.PasswordEnv)
		}
		p, ok := u.Provisioners[d.Engine]
		if !ok {
			var err error
			if p, err = upstream.NewProvisioner(d.Engine, o); err != nil {
				u.Close()
				return Upstreams{}, fmt.Errorf("database %s: %w", d.Name, err)
			}
			u.Provisioners[d.Engine] = p
		}
		db, err := p.Open(UpstreamConfig(cfg, d, password))
		if err != nil {
			u.Close()
			return Upstreams{}, err
		}
		u.Databases[d.Name] = db
		u.engineOf[d.Name] = d.Engine
	}
	return u, nil
}

// Of are the databases of engine, for its gateway engine.
func (u Upstreams) Of(engine string) map[string]any {
	out := map[string]any{}
	for name, db := range u.Databases {
		if u.engineOf[name] == engine {
			out[name] = db
		}
	}
	return out
}

// Close closes every database.
func (u Upstreams) Close() {
	for _, db := range u.Databases {
		db.Close()
	}
}
