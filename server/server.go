// Package server assembles a keygate server from its parts — store, audit
// log, CA, token keys, access policy, API and gateways — and runs it until
// its context ends, then drains. `keygate server` and `keygate demo` both run
// one.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/gateway/mysqlwire"
	"github.com/keygate/keygate/gateway/pgwire"
	"github.com/keygate/keygate/internal/atomicfile"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/scim"
	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/sso/saml"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/postgres"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream"
	"github.com/keygate/keygate/web"
	// The provisioners register themselves.
	_ "github.com/keygate/keygate/upstream/mysql"
	_ "github.com/keygate/keygate/upstream/postgres"
)

// Files in data_dir.
const (
	StoreFile           = "keygate.db"
	TokenKeysFile       = "token-keys.json"
	AdminCredentialFile = "admin.credential"
	// AuditKeyFile signs the audit checkpoints; AuditPublicKeyFile is
	// its public half, for auditors.
	AuditKeyFile       = "audit-signing.key"
	AuditPublicKeyFile = "audit-signing.pub"
)

// Server is an assembled keygate server with its listeners bound.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	store store.Store
	// shared is the same store when it is a state database several
	// servers share; nil on SQLite.
	shared *postgres.Store
	// node names this server's audit chain: "" for a lone server on
	// SQLite, state.node (or the host name) on a shared state database.
	node string
	// secrets mirrors the shared files in data_dir to the state database;
	// nil on SQLite.
	secrets *secretMirror
	// peers records this server's upstream backends for the others
	// sharing the state; nil on SQLite.
	peers     upstream.Peers
	auditKey  ed25519.PrivateKey
	samlKey   *rsa.PrivateKey
	samlCert  *x509.Certificate
	audit     *audit.Log
	ca        *pki.Authority
	keys      *token.KeySet
	gw        *gateway.Gateway
	upstreams Upstreams
	http      *http.Server
	apiLn     net.Listener
	pgLn      net.Listener
	pgEngine  gateway.Engine
	// myLn and myEngine serve engine: mysql databases; both are nil when
	// the config has none, so that such an install binds no MySQL port.
	myLn     net.Listener
	myEngine gateway.Engine
	saml     *saml.Provider // nil unless sso.saml is configured
	authz    *authz.Authz

	// portal is where browser sign-ins end (the web portal); New must set
	// it before buildSSO runs. Nil: no portal, and sso serves no browser
	// sign-in.
	portal sso.Browser

	// reloadMu serialises reloads, from SIGHUP and the API alike.
	reloadMu sync.Mutex
	// sprawl is the size of the access rules, for the metrics.
	sprawl atomic.Pointer[metrics.SprawlState]
	// standing is what the last scans for standing credentials found,
	// for the metrics.
	standing standingState
	// policyMu serialises building and installing the access policy, so
	// that one built from an older list of groups or an older config never
	// replaces a newer one. It guards rules and groups.
	policyMu sync.Mutex
	rules    accessRules
	// groups are the group names the policy in force was built from; nil
	// without a group naming rule.
	groups []string
	// rulesDigest is the digest of the access rules in force, as the
	// config history records them; rulesDiffer is set while they differ
	// from the newest rules another server sharing the state loaded.
	rulesDigest atomic.Pointer[string]
	rulesDiffer atomic.Pointer[error]
	// nodeTaken is set while another connection holds this server's node
	// name on the shared state (see checkNode).
	nodeTaken atomic.Pointer[error]
	// admins are the administrators in force: the API reads them on every
	// admin request, and a reload replaces them.
	admins atomic.Pointer[config.Administrators]

	// events is the audit log as every part records to it: counted by
	// type for the metrics.
	events      *metrics.AuditCounter
	metrics     *prometheus.Registry
	metricsLn   net.Listener // nil unless listen.metrics is set
	metricsHTTP *http.Server

	// lock is data_dir's, held from the start of New until close.
	lock *Lock
	// closeOnce makes close safe to call again: Run's stop closes, and so
	// may the caller of a server that never ran.
	closeOnce sync.Once
}

// New opens the state in data_dir (creating it on first start), binds the
// listeners and returns a server ready to Run. It first takes data_dir's
// lock: a data_dir another process uses is refused, with an *InUseError
// naming it, before anything is opened or bound. On error nothing is left
// open.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log}
	raiseFileLimit(log)
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	dataDir := cfg.Resolve(cfg.DataDir)
	// The lock comes first: nothing in data_dir is opened, created or
	// changed while another process uses it.
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	if s.lock, err = AcquireLock(dataDir, "server"); err != nil {
		var inUse *InUseError
		if errors.As(err, &inUse) {
			return nil, fmt.Errorf("%w: two servers on one data_dir would break its audit log; stop that one first, or give this one a data_dir of its own", err)
		}
		return nil, err
	}
	if err := prepareDataDir(dataDir, !cfg.State.Shared(), log); err != nil {
		return nil, err
	}
	warnSpills(dataDir, log)
	now := time.Now
	if err := s.openState(ctx, cfg, dataDir); err != nil {
		return nil, err
	}
	if s.audit, err = audit.Open(ctx, s.store, log, now, audit.WithChain(s.node)); err != nil {
		return nil, err
	}
	s.events = metrics.NewAuditCounter(s.audit)
	s.metrics = metrics.NewRegistry()
	s.metrics.MustRegister(s.events)
	var adminHash [sha256.Size]byte
	openSecrets := func() error {
		adminHash, err = s.openSecrets(cfg, dataDir, now())
		return err
	}
	if s.secrets != nil {
		err = s.secrets.sync(ctx, openSecrets)
	} else {
		err = openSecrets()
	}
	if err != nil {
		return nil, err
	}
	s.setAdministrators(cfg.Administrators)
	start := time.Now()
	groups, err := s.groupNames(ctx, cfg)
	if err != nil {
		return nil, err
	}
	built, err := buildPolicy(cfg, groups)
	if err != nil {
		return nil, err
	}
	rules := accessRules{cfg: cfg, dbs: accessDatabases(cfg.Databases)}
	az := authz.New(s.store, built.policy, rules.dbs, now)
	az.Refresh = s.refreshPolicy
	az.SetHistory(&history{st: s.store})
	s.authz = az
	s.policyMu.Lock()
	s.install(rules, built, time.Since(start))
	s.policyMu.Unlock()
	if err := s.startRules(ctx, cfg, now()); err != nil {
		return nil, err
	}

	if s.upstreams, err = OpenUpstreams(cfg, upstream.Options{Log: log, OnIntrusion: s.intrusion, Peers: s.peers}); err != nil {
		return nil, err
	}

	s.gw = gateway.New(&token.Verifier{Keys: s.keys, Now: now, Leeway: 30 * time.Second}, az, s.events, log, now)
	s.gw.Pools = s.upstreams.gatewayPools()
	s.gw.RevocationWarning = time.Duration(cfg.Report.RevocationTarget)
	if s.shared != nil {
		s.gw.Current = s.stateCurrent
		s.metrics.MustRegister(metrics.StateFeedLag(s.shared.FeedLag))
		s.gw.Relay = cancelRelay{st: s.shared, log: log}.relay
		s.shared.OnRelayedCancel(func(payload string) {
			if engine, id, proof, ok := receiveCancel(payload); ok {
				s.gw.CancelRelayed(context.Background(), engine, id, proof)
			}
		})
	}
	s.metrics.MustRegister(metrics.GatewaySessions(s.gw.SessionCount), metrics.NewSprawlCollector(func() metrics.SprawlState {
		if sp := s.sprawl.Load(); sp != nil {
			return *sp
		}
		return metrics.SprawlState{}
	}))
	newEngine := func(name string) (gateway.Engine, error) {
		return gateway.NewEngine(name, gateway.EngineOptions{Gateway: s.gw, TLS: s.ca.ServerTLS, Upstreams: s.upstreams.Of(name),
			MaxStatement: int(cfg.Audit.MaxStatementSize), TruncateOversized: cfg.Audit.OversizedStatements == config.OversizedTruncate})
	}
	if s.pgEngine, err = newEngine(pgwire.EngineName); err != nil {
		return nil, err
	}
	if cfg.Uses(config.EngineMySQL) {
		if s.myEngine, err = newEngine(mysqlwire.EngineName); err != nil {
			return nil, err
		}
	}
	s.metrics.MustRegister(metrics.NewUpstreamCollector(s.upstreamStates), metrics.NewPoolCollector(s.poolStates), metrics.NewStandingCollector(s.standingCounts))

	portal, err := web.New(web.Options{Log: log, Now: now, BaseURL: cfg.APIURL(), SAML: cfg.SSO.SAML != nil, OIDC: cfg.SSO.OIDC != nil,
		SignInPath: sso.PathBrowserStart})
	if err != nil {
		return nil, err
	}
	s.portal = portal
	signIn, err := s.buildSSO(ctx, now)
	if err != nil {
		return nil, err
	}
	if s.saml != nil {
		s.metrics.MustRegister(metrics.NewSAMLCollector(s.saml))
	}
	provisioning := scim.New(s.store, s.events, log, now)
	provisioning.PublicURL = cfg.PublicURL
	apiSrv := &api.Server{Store: s.store, Authz: az, Tokens: &token.Issuer{Keys: s.keys, Now: now}, Audit: s.events, Log: log, Now: now,
		AdminHash: adminHash, Administrators: s.administrators, CAPEM: s.ca.CAPEM(), SCIM: provisioning.Handler(), SignIn: signIn, Reloader: s, Findings: s, Report: s,
		Live: liveSessions{s.gw}, Rules: s, Health: s.health, Reach: api.ConfigReach(s.cfg, s.gatewayAddr)}
	s.http = &http.Server{Handler: portal.Handler(apiSrv.Handler()), TLSConfig: s.ca.ServerTLS(),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	s.http.RegisterOnShutdown(apiSrv.StopWaiting)

	if s.apiLn, err = listen("listen.api", cfg.Listen.API); err != nil {
		return nil, err
	}
	if s.pgLn, err = listen("listen.postgres", cfg.Listen.Postgres); err != nil {
		return nil, err
	}
	if s.myEngine != nil {
		if s.myLn, err = listen("listen.mysql", cfg.Listen.MySQL); err != nil {
			return nil, err
		}
	}
	if cfg.Listen.Metrics != "" {
		if s.metricsLn, err = listen("listen.metrics", cfg.Listen.Metrics); err != nil {
			return nil, err
		}
		s.metricsHTTP = &http.Server{Handler: metrics.Handler(s.metrics, log),
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	}
	if err := s.lock.SetAddrs(Holder{API: s.APIAddr(), Postgres: s.PostgresAddr(), MySQL: s.MySQLAddr(), Metrics: s.MetricsAddr()}); err != nil {
		return nil, err
	}
	return s, nil
}

// UpstreamConfig is how keygate reaches and manages database d, with the
// admin role's password.
func UpstreamConfig(cfg *config.Config, d config.Database, password string) upstream.Config {
	return upstream.Config{Name: d.Name, Address: d.Address, Database: d.Database, Schemas: d.Schemas, OwnerRole: d.OwnerRole,
		AdminUser: d.Admin.User, AdminPassword: password, TLS: d.TLS, TLSCAFile: cfg.Resolve(d.TLSCAFile), LocalInfile: d.LocalInfile,
		Pool: d.Pool.On(), PoolIdleTimeout: time.Duration(d.Pool.IdleTimeout), PoolMaxIdle: d.Pool.MaxIdle,
		MaxConnections: d.MaxConnections, MaxConnectionsPerPerson: d.MaxConnectionsPerPerson, QueueTimeout: time.Duration(d.QueueTimeout)}
}

func accessDatabases(dbs []config.Database) []access.Database {
	out := make([]access.Database, len(dbs))
	for i, d := range dbs {
		out[i] = d.AccessDatabase()
	}
	return out
}

func listen(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "address already in use") {
			hint = ": another process holds the port; stop it or change " + key
		}
		return nil, fmt.Errorf("%s %s: %w%s", key, addr, err, hint)
	}
	return ln, nil
}

// adminCredential reads the admin credential's hash, creating the
// credential (mode 0600) on first start.
func adminCredential(path string) ([sha256.Size]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		cred := credential.New(credential.AdminPrefix)
		if err := atomicfile.WriteFile(path, []byte(cred+"\n"), 0o600); err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("create admin credential: %w", err)
		}
		return credential.Hash(cred), nil
	}
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("read admin credential: %w", err)
	}
	cred := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(cred, credential.AdminPrefix) {
		return [sha256.Size]byte{}, fmt.Errorf("admin credential %s is malformed: remove it and restart to make a new one", path)
	}
	return credential.Hash(cred), nil
}

// APIAddr is the address the API listens on.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// PostgresAddr is the address the PostgreSQL gateway listens on.
func (s *Server) PostgresAddr() string { return s.pgLn.Addr().String() }

// MySQLAddr is the address the MySQL gateway listens on, or "" when no
// database has engine: mysql.
func (s *Server) MySQLAddr() string {
	if s.myLn == nil {
		return ""
	}
	return s.myLn.Addr().String()
}

// MetricsAddr is the address metrics are served on, or "" when
// listen.metrics is not set.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// CAFile is the path of the CA bundle.
func (s *Server) CAFile() string { return s.cfg.DataPath(pki.CAFile) }

// Run serves until ctx ends, then stops accepting, lets live sessions
// finish for shutdown_grace, ends the rest, and closes the state and
// data_dir's lock: within shutdown_grace and stopBound, whatever hangs.
func (s *Server) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		s.gw.Watch(watchCtx, s.store.Watch(watchCtx))
	}()
	groupChanges := s.store.Watch(watchCtx)
	groupsDone := make(chan struct{})
	go func() {
		defer close(groupsDone)
		// Groups changed between New and the subscription are caught up
		// on first.
		s.refreshPolicy(watchCtx)
		s.watchGroups(watchCtx, groupChanges)
	}()
	s.checkUpstreams(ctx)
	go s.maintain(ctx)
	if s.shared != nil {
		go s.watchFeed(ctx)
	}
	go s.watchGrants(ctx)
	go s.watchStanding(ctx)
	for _, p := range s.upstreams.Provisioners {
		go p.Watch(watchCtx)
	}
	if s.saml != nil {
		go s.saml.Run(ctx)
	}

	errc := make(chan error, 4)
	go func() {
		if err := s.http.ServeTLS(s.apiLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("api: %w", err)
		}
	}()
	go func() {
		if err := s.gw.Serve(ctx, s.pgLn, s.pgEngine); err != nil {
			errc <- fmt.Errorf("postgres gateway: %w", err)
		}
	}()
	if s.myLn != nil {
		go func() {
			if err := s.gw.Serve(ctx, s.myLn, s.myEngine); err != nil {
				errc <- fmt.Errorf("mysql gateway: %w", err)
			}
		}()
	}
	if s.metricsHTTP != nil {
		go func() {
			if err := s.metricsHTTP.Serve(s.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	servable := 0
	for _, u := range s.upstreams.Databases {
		if u.Ready() {
			servable++
		}
	}
	ready := []any{"api", "https://" + s.APIAddr(), "postgres", s.PostgresAddr(), "data_dir", s.cfg.Resolve(s.cfg.DataDir),
		"databases_ready", fmt.Sprintf("%d/%d", servable, len(s.upstreams.Databases))}
	if s.myLn != nil {
		ready = append(ready, "mysql", s.MySQLAddr())
	}
	if s.metricsLn != nil {
		ready = append(ready, "metrics", "http://"+s.MetricsAddr()+metrics.Path)
	}
	s.log.Info("keygate is ready", ready...)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	grace := time.Duration(s.cfg.ShutdownGrace)
	s.log.Info("shutting down", "grace", grace, "live_sessions", len(s.gw.Sessions()))
	s.stop(grace, func() {
		stopWatch()
		<-watchDone
		<-groupsDone
	})
	return runErr
}

// upstreamCheckTimeout bounds the start-up check of the upstreams, so that
// one unreachable database delays "ready" by at most this much.
const upstreamCheckTimeout = 15 * time.Second

// checkUpstreams checks every upstream at once (connect, privileges, group
// roles) before the server says it is ready, and warns, naming each
// database that cannot be served and why. Connections to such a database
// are refused until a later check passes.
func (s *Server) checkUpstreams(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, upstreamCheckTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for name, u := range s.upstreams.Databases {
		wg.Go(func() {
			if err := u.Check(ctx); err != nil {
				s.log.Warn("database cannot be served; connections to it are refused until keygate's checks pass", "database", name, "err", err)
			}
		})
	}
	wg.Wait()
}

// intrusion audits a backend of a keygate-managed role that keygate did not
// open, which the upstream watcher found and ended.
func (s *Server) intrusion(in upstream.Intrusion) {
	reason := fmt.Sprintf("a backend of %s that keygate did not open was ended: someone logged in to the upstream directly", in.Role)
	detail := map[string]any{"role": in.Role, "pid": in.PID, "client_addr": in.ClientAddr, "client_port": in.ClientPort, "terminated": in.Terminated}
	if !in.BackendStart.IsZero() {
		detail["backend_start"] = in.BackendStart.UTC().Format(time.RFC3339Nano)
	}
	if in.Err != nil {
		reason = fmt.Sprintf("a backend of %s that keygate did not open could not be ended", in.Role)
		detail["error"] = in.Err.Error()
	}
	s.events.Record(audit.Event{Type: audit.UpstreamIntrusion, User: in.Person, Database: in.Database, Client: net.JoinHostPort(in.ClientAddr, fmt.Sprint(in.ClientPort)),
		Reason: reason, Detail: detail})
}

// upstreamStates is what the metrics say of each upstream database.
func (s *Server) upstreamStates() []metrics.UpstreamState {
	out := make([]metrics.UpstreamState, 0, len(s.upstreams.Databases))
	for name, u := range s.upstreams.Databases {
		st := metrics.UpstreamState{Database: name, Ready: u.Ready(), HBA: -1}
		switch r, _ := u.Restriction(); r {
		case upstream.Restricted:
			st.HBA = 1
		case upstream.Unrestricted:
			st.HBA = 0
		}
		out = append(out, st)
	}
	return out
}

// maintain rotates the token signing key and renews the gateway
// certificate on schedule and, on a shared state database, takes in what
// the other servers shared.
func (s *Server) maintain(ctx context.Context) {
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	checkpoints := time.NewTicker(time.Duration(s.cfg.Audit.CheckpointInterval))
	defer checkpoints.Stop()
	var pull <-chan time.Time
	if s.secrets != nil {
		p := time.NewTicker(secretsPullEvery)
		defer p.Stop()
		pull = p.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.maintainSecrets(ctx)
		case <-pull:
			s.pullSecrets(ctx)
		case <-checkpoints.C:
			if err := s.audit.Checkpoint(ctx, s.auditKey); err != nil {
				s.log.Error("could not add an audit checkpoint", "err", err)
			}
		}
	}
}

// close releases everything New opened, in reverse order, once; the
// data_dir lock goes last, when nothing in data_dir is open any more.
func (s *Server) close() {
	s.closeOnce.Do(s.closeAll)
}

func (s *Server) closeAll() {
	for _, ln := range []net.Listener{s.apiLn, s.pgLn, s.myLn, s.metricsLn} {
		if ln != nil {
			ln.Close()
		}
	}
	s.upstreams.Close()
	if s.audit != nil {
		s.audit.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if err := s.lock.Release(); err != nil {
		s.log.Warn("release the data_dir lock", "err", err)
	}
}
