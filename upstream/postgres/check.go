package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPrivileges means keygate's admin role lacks a privilege keygate needs
// to keep its guarantees; the error's text says which statements fix it.
var ErrPrivileges = errors.New("keygate's admin role lacks privileges it needs")

// recheckPrivileges is how often a database whose admin role lacked a
// privilege is checked again when someone connects to it, so that a fix
// applies without a restart.
var recheckPrivileges = 5 * time.Second

// privilege is something keygate's admin role must have, and the statement
// that gives it.
type privilege struct {
	name string
	fix  string // format with the admin role's identifier
}

// privileges are what keygate's admin role needs: CREATEROLE to manage the
// per-person roles; pg_signal_backend to end a person's backends on
// revocation and those of its roles that keygate did not open; and
// pg_read_all_stats to see where such a backend came from.
var privileges = []privilege{
	{"CREATEROLE", "ALTER ROLE %s CREATEROLE;"},
	{"pg_signal_backend", "GRANT pg_signal_backend TO %s;"},
	{"pg_read_all_stats", "GRANT pg_read_all_stats TO %s;"},
}

// Check connects as the admin role and reports what would stop keygate from
// managing the database, for `keygate server` start-up and diagnostics. A
// missing privilege is an error wrapping ErrPrivileges that lists the
// statements to run; until they are run, Connect refuses this database.
// Check logs what weakens the guarantees without stopping keygate.
func (u *Upstream) Check(ctx context.Context) error {
	u.checkMu.Lock()
	defer u.checkMu.Unlock()
	return u.check(ctx)
}

func (u *Upstream) check(ctx context.Context) error {
	u.checkedAt = time.Now()
	err := u.checkAdmin(ctx)
	if err == nil {
		// The group roles and their grants: what the first connection
		// would otherwise set up, and find wrong, after "ready".
		err = u.ensureGroups(ctx)
	}
	u.checkErr = err
	u.checkOK.Store(err == nil)
	if err == nil {
		u.checkHBA(ctx)
	}
	return err
}

func (u *Upstream) checkAdmin(ctx context.Context) error {
	if host, _, _ := net.SplitHostPort(u.cfg.Address); u.cfg.TLS != "verify-full" && !isLoopback(host) {
		u.warnOnce("tls", "the connection to the upstream is not verified: an attacker on the network could read or change it; set tls: verify-full and tls_ca_file", "tls", u.cfg.TLS)
	}
	var super, publicTemp bool
	var version string
	var serverNow time.Time
	var maxConns int
	has := make([]bool, len(privileges))
	asked := time.Now()
	err := u.admin.QueryRow(ctx, `SELECT rolsuper, rolcreaterole OR rolsuper,
		pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
		pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
		pg_catalog.current_setting('server_version'),
		pg_catalog.has_database_privilege('public', pg_catalog.current_database(), 'TEMP'),
		pg_catalog.clock_timestamp(),
		pg_catalog.current_setting('max_connections')::int - pg_catalog.current_setting('superuser_reserved_connections')::int
		FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&super, &has[0], &has[1], &has[2], &version, &publicTemp, &serverNow, &maxConns)
	if err != nil {
		return u.adminErr("connect as admin", err)
	}
	// The login window's expiry is written in the upstream's time: half
	// the round trip is the best guess of when the server read its clock.
	read := asked.Add(time.Since(asked) / 2)
	u.offset.Store(int64(read.Sub(serverNow)))
	u.pool.SizeIdle(maxConns)
	if publicTemp {
		u.infoOnce("temp", "every role may create temporary tables in this database, read-only people included; to stop that, REVOKE TEMP ON DATABASE ... FROM PUBLIC")
	}
	if major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0]); major > 0 && major < 13 {
		u.warnOnce("version", "PostgreSQL older than 13 is not supported", "version", version)
	}
	var missing, fixes []string
	for i, p := range privileges {
		if !has[i] {
			missing = append(missing, p.name)
			fixes = append(fixes, fmt.Sprintf(p.fix, sqlName(u.cfg.AdminUser)))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s, the admin role of database %s, lacks %s: as a superuser, run: %s", ErrPrivileges, u.cfg.AdminUser, u.cfg.Name,
			strings.Join(missing, ", "), strings.Join(fixes, " "))
	}
	return nil
}

// checked checks the admin role on first use, and again at most every
// recheckPrivileges while it lacks a privilege.
func (u *Upstream) checked(ctx context.Context) error {
	if u.checkOK.Load() {
		return nil
	}
	u.checkMu.Lock()
	defer u.checkMu.Unlock()
	if u.checkOK.Load() {
		return nil
	}
	if errors.Is(u.checkErr, ErrPrivileges) && time.Since(u.checkedAt) < recheckPrivileges {
		return u.checkErr
	}
	return u.check(ctx)
}

// Ready reports whether the admin role passed its last Check: connections
// to the database are refused until it does.
func (u *Upstream) Ready() bool { return u.checkOK.Load() }

// clockOffset is how far keygate's clock is ahead of the upstream's, as
// measured by the last Check.
func (u *Upstream) clockOffset() time.Duration { return time.Duration(u.offset.Load()) }

// HBA says whether the upstream's pg_hba.conf lets keygate-managed roles log
// in only from keygate's address.
type HBA int

// What keygate can tell of the upstream's pg_hba.conf.
const (
	HBAUnknown    HBA = iota // keygate may not read pg_hba_file_rules
	HBARestricted            // keygate-managed roles may log in only from keygate's address
	HBAOpen                  // a rule lets them log in from elsewhere
)

// HBA is what the last Check found of the upstream's pg_hba.conf.
func (u *Upstream) HBA() HBA { return HBA(u.hba.Load()) }

// HBAReport is what the last Check found of the upstream's pg_hba.conf,
// and what to do about it, in words.
func (u *Upstream) HBAReport() (HBA, string) {
	u.notedMu.Lock()
	defer u.notedMu.Unlock()
	return u.HBA(), u.hbaReport
}

// PeopleRole is the server-wide role every person role is a member of, so
// that one pg_hba.conf line can name them all: `+keygate_people`.
const PeopleRole = "keygate_people"

// checkHBA reads the upstream's pg_hba.conf rules, where the admin role may,
// and logs when keygate-managed roles can log in from an address other
// than keygate's: the watcher ends such backends within seconds, but the
// rule stops them before they exist.
func (u *Upstream) checkHBA(ctx context.Context) {
	var self *string
	if err := u.admin.QueryRow(ctx, `SELECT pg_catalog.host(pg_catalog.inet_client_addr())`).Scan(&self); err != nil {
		u.log.Debug("could not learn keygate's address as the upstream sees it", "err", err)
		return
	}
	// Asking first keeps a permission error out of the server's log.
	var readable bool
	err := u.admin.QueryRow(ctx, `SELECT pg_catalog.has_table_privilege('pg_catalog.pg_hba_file_rules', 'SELECT')
		AND pg_catalog.has_function_privilege('pg_catalog.pg_hba_file_rules()', 'EXECUTE')`).Scan(&readable)
	if err != nil {
		u.log.Debug("could not ask whether pg_hba_file_rules is readable", "err", err)
		return
	}
	var rows pgx.Rows
	if readable {
		rows, err = u.admin.Query(ctx, `SELECT line_number, type, coalesce(database, '{}'), coalesce(user_name, '{}'),
			coalesce(address, ''), coalesce(netmask, ''), coalesce(auth_method, '')
			FROM pg_catalog.pg_hba_file_rules WHERE error IS NULL ORDER BY line_number`)
	}
	var rules []hbaRule
	if readable && err == nil {
		rules, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (hbaRule, error) {
			var h hbaRule
			var line int32
			err := r.Scan(&line, &h.typ, &h.databases, &h.users, &h.address, &h.netmask, &h.method)
			h.line = int(line)
			return h, err
		})
	}
	addr := "<keygate's address>"
	if self != nil {
		addr = *self
	}
	rule := fmt.Sprintf("host all +%s %s/%d scram-sha-256, then host all +%s all reject", PeopleRole, addr, hostBits(addr), PeopleRole)
	var pgErr *pgconn.PgError
	switch {
	case !readable || errors.As(err, &pgErr) && pgErr.Code == "42501":
		msg := "keygate may not read the upstream's pg_hba.conf rules, so it cannot check that its roles log in only from keygate; " +
			"to let it, run GRANT SELECT ON pg_catalog.pg_hba_file_rules TO " + sqlName(u.cfg.AdminUser) + "; GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO " + sqlName(u.cfg.AdminUser)
		u.setHBA(HBAUnknown, msg+"; the rule to have: "+rule)
		u.infoOnce("hba", msg, "recommended_rule", rule)
		return
	case err != nil:
		u.log.Debug("could not read pg_hba_file_rules", "err", err)
		return
	}
	var ip net.IP
	if self != nil {
		ip = net.ParseIP(*self)
	}
	if open, r := hbaOpen(rules, u.cfg.Database, ip); open {
		msg := "the upstream's pg_hba.conf lets keygate-managed roles log in from addresses other than keygate's; keygate ends such backends within seconds, but add this rule before the one named here to refuse them outright"
		u.setHBA(HBAOpen, fmt.Sprintf("%s: line %d (%s); add: %s", msg, r.line, r, rule))
		u.warnOnce("hba", msg, "hba_line", r.line, "hba_rule", r.String(), "add", rule)
		return
	}
	msg := "the upstream's pg_hba.conf lets keygate-managed roles log in only from keygate's address"
	u.setHBA(HBARestricted, msg)
	u.infoOnce("hba", msg)
}

func (u *Upstream) setHBA(h HBA, report string) {
	u.notedMu.Lock()
	defer u.notedMu.Unlock()
	u.hba.Store(int32(h))
	u.hbaReport = report
}

func hostBits(addr string) int {
	if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
		return 128
	}
	return 32
}

// hbaRule is one line of pg_hba.conf as pg_hba_file_rules shows it.
type hbaRule struct {
	line             int
	typ              string
	databases, users []string
	address, netmask string
	method           string
}

func (r hbaRule) String() string {
	addr := r.address
	if mask := net.ParseIP(r.netmask); mask != nil {
		ones, _ := net.IPMask(maskBytes(mask)).Size()
		addr = fmt.Sprintf("%s/%d", r.address, ones)
	}
	return strings.Join([]string{r.typ, strings.Join(r.databases, ","), strings.Join(r.users, ","), addr, r.method}, " ")
}

func maskBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// hbaOpen reports whether rules let a keygate-managed role connect to
// database db over TCP from an address other than keygate's (self), and
// names the first rule that does. Rules are matched in order, as
// PostgreSQL does; rules for the Unix socket are left out (they need a
// login on the database host). It errs on the side of "open": an address
// form it cannot judge counts as any address.
func hbaOpen(rules []hbaRule, db string, self net.IP) (bool, hbaRule) {
	closed := map[int]bool{} // address family (4, 6) → refused from everywhere
	for _, r := range rules {
		if r.typ == "local" || !hbaMatchesDB(r.databases, db) || !hbaMatchesManaged(r.users) {
			continue
		}
		families, onlySelf := hbaScope(r, self)
		if r.method == "reject" {
			if !onlySelf {
				for _, f := range families {
					closed[f] = true
				}
			}
			if closed[4] && closed[6] {
				return false, hbaRule{}
			}
			continue
		}
		if onlySelf {
			continue
		}
		for _, f := range families {
			if !closed[f] {
				return true, r
			}
		}
	}
	return false, hbaRule{}
}

func hbaMatchesDB(dbs []string, db string) bool {
	return slices.Contains(dbs, "all") || slices.Contains(dbs, db)
}

// hbaMatchesManaged reports whether a rule's user field can match a
// keygate-managed role.
func hbaMatchesManaged(users []string) bool {
	for _, u := range users {
		switch {
		case u == "all", u == "+"+PeopleRole, strings.HasPrefix(u, "+keygate_"), personOf(u) != "":
			return true
		}
	}
	return false
}

// hbaScope says which address families a rule covers and whether it covers
// keygate's own address and nothing else.
func hbaScope(r hbaRule, self net.IP) (families []int, onlySelf bool) {
	switch r.address {
	case "all", "samenet", "samehost", "":
		return []int{4, 6}, false
	}
	ip := net.ParseIP(r.address)
	if ip == nil {
		// A host name: PostgreSQL resolves it for each connection.
		return []int{4, 6}, false
	}
	family := 6
	if ip.To4() != nil {
		family = 4
	}
	mask := net.ParseIP(r.netmask)
	if mask == nil {
		return []int{family}, false
	}
	ones, bits := net.IPMask(maskBytes(mask)).Size()
	return []int{family}, self != nil && ones == bits && ip.Equal(self)
}

// sqlName writes a role name for a statement a person copies: bare when
// SQL reads it back unchanged, quoted otherwise.
func sqlName(name string) string {
	if plainName.MatchString(name) && !reserved[name] {
		return name
	}
	return ident(name)
}

var plainName = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// reserved are PostgreSQL's reserved key words, which a role name must be
// quoted to use.
var reserved = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric both case cast check collate column
		constraint create current_catalog current_date current_role current_time current_timestamp current_user default
		deferrable desc distinct do else end except false fetch for foreign from grant group having in initially intersect
		into lateral leading limit localtime localtimestamp not null offset on only or order placing primary references
		returning select session_user some symmetric table then to trailing true union unique user using variadic when where
		window with authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull join
		left like natural notnull outer overlaps right similar tablesample verbose`) {
		reserved[w] = true
	}
}

// warnOnce and infoOnce log a finding about the upstream once, not at every
// check.
func (u *Upstream) warnOnce(key, msg string, args ...any) {
	if u.noteOnce(key, msg) {
		u.log.Warn(msg, args...)
	}
}

func (u *Upstream) infoOnce(key, msg string, args ...any) {
	if u.noteOnce(key, msg) {
		u.log.Info(msg, args...)
	}
}

func (u *Upstream) noteOnce(key, msg string) bool {
	u.notedMu.Lock()
	defer u.notedMu.Unlock()
	if u.noted[key] == msg {
		return false
	}
	u.noted[key] = msg
	return true
}
