package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// offlinePoll is how often keygate audit --follow looks at the audit file
// when it reads data_dir directly.
const offlinePoll = 500 * time.Millisecond

// auditSource is where keygate audit reads: the server's API, or, when
// nothing answers at the server's address, the store in data_dir, opened
// read-only. An auditor can then read and verify the log of a server that
// is stopped, or that will not start.
type auditSource struct {
	c         *client.Client
	serverURL string
	storePath string
	// sharedState is set when the config keeps the state in a shared
	// database, which is read through a server only.
	sharedState bool
	notice      io.Writer
	ro          *sqlite.ReadOnly // set once reading data_dir
}

func openAuditSource(g *globals, notice io.Writer) (*auditSource, error) {
	if g.configPath == "" {
		// An administrator signed in reads through the API alone: the
		// data_dir fallback is for whoever runs on the server's host.
		c, err := g.adminClient()
		if err != nil {
			return nil, err
		}
		return &auditSource{c: c, serverURL: c.Server(), notice: notice}, nil
	}
	cfg, err := g.readConfig(config.LoadLocation)
	if err != nil {
		return nil, err
	}
	c, err := g.adminClient()
	if err != nil {
		return nil, err
	}
	serverURL, _ := g.endpointFrom(cfg)
	src := &auditSource{c: c, serverURL: serverURL, notice: notice}
	// A shared state database is read through any server that answers:
	// data_dir holds no audit log then.
	if cfg.State.Shared() {
		src.sharedState = true
	} else {
		src.storePath = cfg.DataPath(server.StoreFile)
	}
	return src, nil
}

func (s *auditSource) close() {
	if s.ro != nil {
		s.ro.Close()
	}
}

// list calls fn for each event matching f, oldest first.
func (s *auditSource) list(ctx context.Context, f client.AuditFilter, fn func(api.AuditEvent) error) error {
	shown := false
	err := s.c.Audit(ctx, f, func(e api.AuditEvent) error { shown = true; return fn(e) })
	if err == nil || shown || !serverNotAnswering(err) {
		return s.explain(err)
	}
	if err := s.readDataDir(ctx, err); err != nil {
		return err
	}
	_, err = s.listFile(ctx, f, fn)
	return err
}

// follow calls fn for each event matching f as it is recorded, until ctx
// ends.
func (s *auditSource) follow(ctx context.Context, f client.AuditFilter, fn func(api.AuditEvent) error) (err error) {
	defer func() {
		if ctx.Err() != nil {
			// Ctrl-C is how a follow ends, whatever it was doing.
			err = nil
		}
	}()
	shown := false
	err = s.c.FollowAudit(ctx, f, func(e api.AuditEvent) error { shown = true; return fn(e) })
	if err != nil && shown && serverNotAnswering(err) {
		return fmt.Errorf("keygate server at %s stopped answering (%w): run keygate audit again to read data_dir directly", s.serverURL, err)
	}
	if err == nil || shown || !serverNotAnswering(err) {
		return s.explain(err)
	}
	if err := s.readDataDir(ctx, err); err != nil {
		return err
	}
	if f.Since.IsZero() {
		f.Since = time.Now()
	}
	cursor, err := s.listFile(ctx, f, fn)
	if err != nil {
		return err
	}
	q := storeQuery(f)
	q.Since, q.AfterSeq = time.Time{}, cursor
	for {
		events, cursor, err := audit.Wait(ctx, s.ro, q, offlinePoll, nil)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := showStored(events, fn); err != nil {
			return err
		}
		q.AfterSeq = cursor
	}
}

// verify checks the audit log's hash chain.
func (s *auditSource) verify(ctx context.Context) (api.AuditVerification, error) {
	v, err := s.c.VerifyAudit(ctx)
	if err == nil || !serverNotAnswering(err) {
		return v, s.explain(err)
	}
	if err := s.readDataDir(ctx, err); err != nil {
		return v, err
	}
	// As the server's handler does: a chain that cannot be read whole is
	// not shown intact.
	n, err := audit.Verify(ctx, s.ro)
	v = api.AuditVerification{Events: n, Intact: err == nil}
	if err != nil {
		v.Error = err.Error()
	}
	return v, nil
}

// readDataDir opens the store in data_dir read-only, after the server
// failed to answer with cause, and says so once.
func (s *auditSource) readDataDir(ctx context.Context, cause error) error {
	if s.sharedState {
		return fmt.Errorf("keygate server is not answering at %s: %w (the audit log is in the shared state database: ask another keygate server with --server URL)", s.serverURL, cause)
	}
	if s.storePath == "" {
		return fmt.Errorf("keygate server is not answering at %s: %w (on the server's host, --config FILE reads data_dir directly)", s.serverURL, cause)
	}
	dir := filepath.Dir(s.storePath)
	ro, err := sqlite.OpenReadOnly(ctx, s.storePath)
	if err != nil {
		return fmt.Errorf("keygate server is not answering (%v), and data_dir %s cannot be read instead: %w", cause, dir, err)
	}
	s.ro = ro
	fmt.Fprintf(s.notice, "keygate server is not answering at %s; reading data_dir %s directly (read-only)\n", s.serverURL, dir)
	return nil
}

// listFile calls fn for each event in the file matching f and returns the
// cursor past them.
func (s *auditSource) listFile(ctx context.Context, f client.AuditFilter, fn func(api.AuditEvent) error) (int64, error) {
	q := storeQuery(f)
	for {
		events, cursor, err := audit.Page(ctx, s.ro, q)
		if err != nil {
			return 0, err
		}
		if err := showStored(events, fn); err != nil {
			return 0, err
		}
		if len(events) < q.Limit {
			return cursor, nil
		}
		q.AfterSeq = cursor
	}
}

// storeQuery is the store's form of f, a page at a time.
func storeQuery(f client.AuditFilter) store.AuditQuery {
	return store.AuditQuery{User: f.User, Database: f.Database, Type: f.Type, Since: f.Since, Until: f.Until, Limit: 1000}
}

func showStored(events []store.AuditEvent, fn func(api.AuditEvent) error) error {
	for _, e := range events {
		ae, err := api.AuditEventFrom(e)
		if err != nil {
			return err
		}
		if err := fn(ae); err != nil {
			return err
		}
	}
	return nil
}

// serverNotAnswering reports whether err means that nothing listens at the
// server's address: the one case in which reading data_dir is the answer.
// A TLS failure or a refused credential means something else is wrong,
// which reading data_dir would hide.
func serverNotAnswering(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &dnsErr) && dnsErr.IsNotFound)
}

// explain adds what to do to errors that reaching the server can give.
func (s *auditSource) explain(err error) error {
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &hostErr):
		return fmt.Errorf("%w: reach keygate by a name its certificate holds (public_hostnames in the server's config), with --server https://NAME:PORT", err)
	case errors.As(err, &invalidErr):
		return fmt.Errorf("%w: check this machine's clock, and that --ca is keygate's current CA bundle (keygate ca --config FILE)", err)
	// net/http reports an HTTP answer to its TLS hello in words only.
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w: something answers at %s, but not with TLS; is it keygate's API address (listen.api)?", err, s.serverURL)
	}
	return err
}
