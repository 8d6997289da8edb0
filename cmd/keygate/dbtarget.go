package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/api"
)

// tokenFlags are the flags with which `keygate db token` and `keygate db
// connect` name the token they want. Hostname, port, username and region
// are those of aws rds generate-db-auth-token, so that scripts written for
// RDS carry over by changing the command name.
type tokenFlags struct {
	access   string
	hostname string
	port     int
	username string
	region   string
}

// targetInput is everything a token's database and level are decided
// from: the command line, the profile, and what the server said about the
// person (only fetched when a flag needs it).
type targetInput struct {
	arg   string // the DB argument
	flags tokenFlags
	// profile is the profile's name; profileDB and profileAccess are its
	// database and access.
	profile, profileDB, profileAccess string
	// user is the signed-in person, known when --username is given.
	user string
	// dbs is the person's db list, known when --hostname is given.
	dbs []api.DatabaseAccess
}

// target is the database and level to ask a token for; an empty level
// lets the server pick the least the person may use.
type target struct {
	database, level string
}

// resolveTarget decides the database and level of a token. The DB
// argument and --access name them outright; --hostname and --port find
// the database whose upstream is at that address; --username names the
// person or their upstream role, whose suffix is a level; the profile
// fills in what none of them says.
func resolveTarget(in targetInput) (target, error) {
	level, err := resolveLevel(in)
	if err != nil {
		return target{}, err
	}
	database, err := resolveDatabase(in)
	if err != nil {
		return target{}, err
	}
	return target{database: database, level: level}, nil
}

// resolveLevel is --access, or the level --username's role names, or the
// profile's access.
func resolveLevel(in targetInput) (string, error) {
	f := in.flags
	var roleLevel string
	if f.username != "" {
		var err error
		if roleLevel, err = usernameLevel(f.username, in.user); err != nil {
			return "", err
		}
	}
	switch {
	case f.access != "" && roleLevel != "" && f.access != roleLevel:
		return "", usageError{fmt.Errorf("--username %s asks for access %s but --access asks for %s: drop one of them, or make them agree", f.username, roleLevel, f.access)}
	case f.access != "":
		return f.access, nil
	case roleLevel != "":
		return roleLevel, nil
	}
	return in.profileAccess, nil
}

// usernameLevel checks --username against the signed-in person: their
// name gives no level, their upstream role name (NAME.ro, NAME.rw,
// NAME.admin) gives its level.
func usernameLevel(username, user string) (string, error) {
	if username == user {
		return "", nil
	}
	if l, ok := strings.CutPrefix(username, user+"."); ok {
		if _, err := access.ParseLevel(l); err == nil {
			return l, nil
		}
	}
	return "", usageError{fmt.Errorf("--username %s is not you: you are signed in as %s, and tokens are only ever for the signed-in person; pass --username %s, or %s.ro, %s.rw or %s.admin to choose the level (or sign in as %s with keygate login)",
		username, user, user, user, user, user, username)}
}

// resolveDatabase is the DB argument, or the database --hostname and
// --port name, or the profile's database.
func resolveDatabase(in targetInput) (string, error) {
	f := in.flags
	if err := checkAddressFlags(f); err != nil {
		return "", err
	}
	if f.hostname == "" {
		return namedDatabase(in)
	}
	want := hostPort(f.hostname, f.port)
	if in.arg != "" {
		return in.arg, checkArgAddress(in, want)
	}
	var atAddress, atGateway []string
	for _, d := range in.dbs {
		if addressIs(d.Address, f.hostname, f.port) && !slices.Contains(atAddress, d.Database) {
			atAddress = append(atAddress, d.Database)
		}
		if addressIs(d.Gateway, f.hostname, f.port) && !slices.Contains(atGateway, d.Database) {
			atGateway = append(atGateway, d.Database)
		}
	}
	switch {
	case len(atAddress) == 1:
		return atAddress[0], nil
	case len(atAddress) > 1 && slices.Contains(atAddress, in.profileDB):
		return in.profileDB, nil
	case len(atAddress) > 1:
		return "", usageError{fmt.Errorf("several databases you may use are at %s (%s): name one, as in keygate db token %s %s",
			want, strings.Join(atAddress, ", "), atAddress[0], addressFlags(f))}
	case len(atGateway) > 0 && in.profileDB != "" && (slices.Contains(atGateway, in.profileDB) || !listed(in.dbs, in.profileDB)):
		// A profile database the list lacks is the server's to refuse.
		return in.profileDB, nil
	case len(atGateway) > 0:
		return "", usageError{fmt.Errorf("%s is keygate's gateway, which serves every database of its engine you may use (%s): name the database, as in keygate db token %s %s",
			want, strings.Join(atGateway, ", "), atGateway[0], addressFlags(f))}
	}
	return "", usageError{noDatabaseAt(want, in.dbs)}
}

// checkAddressFlags refuses a --port without --hostname, or out of range.
func checkAddressFlags(f tokenFlags) error {
	if f.port != 0 && f.hostname == "" {
		return usageError{errors.New("--port needs --hostname: pass both, as for aws rds generate-db-auth-token, or name the database instead, as in keygate db token orders")}
	}
	if f.port < 0 || f.port > 65535 {
		return usageError{fmt.Errorf("--port %d: use a TCP port, 1 to 65535", f.port)}
	}
	return nil
}

// namedDatabase is the DB argument, else the profile's database.
func namedDatabase(in targetInput) (string, error) {
	if in.arg != "" {
		return in.arg, nil
	}
	if in.profileDB != "" {
		return in.profileDB, nil
	}
	return "", usageError{fmt.Errorf("no database: name one, as in keygate db token orders, pass --hostname and --port with its address, or set database = NAME in profile %s (keygate db list shows the databases you may use)", in.profile)}
}

// checkArgAddress refuses a DB argument that --hostname and --port
// contradict: its upstream and keygate's gateway are both elsewhere. A
// database the list lacks is left to the server, which says why.
func checkArgAddress(in targetInput, want string) error {
	for _, d := range in.dbs {
		if d.Database != in.arg {
			continue
		}
		if addressIs(d.Address, in.flags.hostname, in.flags.port) || addressIs(d.Gateway, in.flags.hostname, in.flags.port) {
			return nil
		}
		return usageError{fmt.Errorf("database %s is at %s (through keygate: %s), not at %s: fix --hostname and --port, or drop them", in.arg, d.Address, d.Gateway, want)}
	}
	return nil
}

// listed says whether the db list has database.
func listed(dbs []api.DatabaseAccess, database string) bool {
	return slices.ContainsFunc(dbs, func(d api.DatabaseAccess) bool { return d.Database == database })
}

// noDatabaseAt says that no database the person may use is at want, and
// where theirs are.
func noDatabaseAt(want string, dbs []api.DatabaseAccess) error {
	if len(dbs) == 0 {
		return fmt.Errorf("no database you may use is at %s: you may use none; an admin sees why with keygate access explain --user YOU --db DB", want)
	}
	var places []string
	for _, d := range dbs {
		p := d.Database + " at " + orDash(d.Address)
		if !slices.Contains(places, p) {
			places = append(places, p)
		}
	}
	return fmt.Errorf("no database you may use is at %s (yours: %s): pass the address as keygate's config gives it, or name the database, as in keygate db token %s",
		want, strings.Join(places, ", "), dbs[0].Database)
}

// addressIs says whether addr (host:port) is host and port, comparing
// host names without regard to case or a trailing dot; port 0 matches any
// port.
func addressIs(addr, host string, port int) bool {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	return norm(h) == norm(host) && (port == 0 || p == strconv.Itoa(port))
}

// addressFlags is --hostname and --port as they were given.
func addressFlags(f tokenFlags) string {
	if f.port == 0 {
		return "--hostname " + f.hostname
	}
	return fmt.Sprintf("--hostname %s --port %d", f.hostname, f.port)
}

// hostPort is host and port as a person reads them; port 0 is any port.
func hostPort(host string, port int) string {
	if port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
