package postgres

import (
	"context"
	"log/slog"

	"github.com/keygate/keygate/upstream"
)

// EngineName is config's engine: postgres.
const EngineName = "postgres"

func init() { upstream.Register(EngineName, newProvisioner) }

// provisioner opens PostgreSQL databases; they share what it keeps of
// their servers (login windows, the watcher).
type provisioner struct {
	servers *Servers
	log     *slog.Logger
}

func newProvisioner(o upstream.Options) upstream.Provisioner {
	s := NewServers(o.Log)
	s.OnIntrusion = o.OnIntrusion
	s.Peers = o.Peers
	return &provisioner{servers: s, log: o.Log}
}

// Open implements upstream.Provisioner.
func (p *provisioner) Open(cfg upstream.Config) (upstream.Database, error) {
	return New(cfg, p.servers, p.log)
}

// Watch implements upstream.Provisioner.
func (p *provisioner) Watch(ctx context.Context) { p.servers.Watch(ctx, DefaultWatchInterval) }

// Restriction implements upstream.Database: what the last Check found of
// pg_hba.conf.
func (u *Upstream) Restriction() (upstream.Restriction, string) {
	hba, report := u.HBAReport()
	r := map[HBA]upstream.Restriction{HBARestricted: upstream.Restricted, HBAOpen: upstream.Unrestricted}[hba]
	return r, "pg_hba.conf: " + report
}
