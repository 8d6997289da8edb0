package web

import (
	"cmp"
	"fmt"
	"html/template"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// notices are the outcomes an action reports on the page it leads to,
// named in the query (?done=…) so that reloading the page repeats nothing.
var notices = map[string]string{
	"session-ended": "The session was ended.",
	"live-ended":    "The database session was ended; its upstream connection is gone.",
	"disabled":      "The person was disabled: their sessions ended and their tokens stopped working.",
	"enabled":       "The person was enabled.",
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join": strings.Join,
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// databaseRow is one database the person can reach, with every level
// they hold on it.
type databaseRow struct {
	Database string
	Engine   string
	Gateway  string
	Levels   []api.DatabaseAccess
}

type homeData struct {
	Databases []databaseRow
}

// home is "My databases": each database the person can reach, its levels
// and why, and where clients reach it.
func (p *Portal) home(v *visit) (string, view, error) {
	list, err := v.api.Databases(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	return "home", view{Title: "My databases", Nav: "databases", Data: homeData{Databases: groupDatabases(list)}}, nil
}

func groupDatabases(list []api.DatabaseAccess) []databaseRow {
	var rows []databaseRow
	for _, d := range list {
		i := slices.IndexFunc(rows, func(r databaseRow) bool { return r.Database == d.Database })
		if i < 0 {
			rows = append(rows, databaseRow{Database: d.Database, Engine: d.Engine, Gateway: d.Gateway})
			i = len(rows) - 1
		}
		rows[i].Levels = append(rows[i].Levels, d)
	}
	slices.SortFunc(rows, func(a, b databaseRow) int { return cmp.Compare(a.Database, b.Database) })
	return rows
}

// caFileName is the name the page asks people to save keygate's CA
// bundle under; the settings it shows name the file so.
const caFileName = "keygate-ca.pem"

// tokenData is the token page: the token and everything a client needs
// with it.
type tokenData struct {
	api.TokenResponse
	Engine  string
	Gateway string
	Host    string
	Port    string
	CAFile  string
	// PSQL is the libpq connection string; MariaDB and MySQL the client
	// command lines; JDBC the driver URL. None holds the token.
	PSQL    string
	MariaDB string
	MySQL   string
	JDBC    string
}

// token issues a database token and shows it, on the response to the
// form's POST: it is never in a URL, and the page is not stored.
func (p *Portal) token(v *visit) (string, error) {
	ctx := v.r.Context()
	db, level := v.r.PostForm.Get("database"), v.r.PostForm.Get("access")
	t, err := v.api.Token(ctx, db, level)
	if err != nil {
		return "", err
	}
	list, err := v.api.Databases(ctx)
	if err != nil {
		return "", err
	}
	d := tokenData{TokenResponse: t, CAFile: caFileName}
	for _, l := range list {
		if l.Database == t.Database {
			d.Engine, d.Gateway = l.Engine, l.Gateway
			break
		}
	}
	if d.Gateway == "" {
		return "", fmt.Errorf("token for %s: no gateway takes %s clients", t.Database, cmp.Or(d.Engine, "its"))
	}
	d.Host, d.Port, _ = net.SplitHostPort(d.Gateway)
	switch d.Engine {
	case "mysql":
		d.MariaDB = "mariadb " + strings.Join(client.MySQLArgs(client.MariaDBClient, d.Gateway, t.Database, t.User, caFileName), " ") + " -p"
		d.MySQL = "mysql " + strings.Join(client.MySQLArgs(client.OracleMySQLClient, d.Gateway, t.Database, t.User, caFileName), " ") + " -p"
	default:
		d.PSQL = client.PSQLConnInfo(d.Gateway, t.Database, t.User, caFileName)
	}
	d.JDBC = client.JDBCURL(d.Engine, d.Gateway, t.Database, caFileName)
	p.render(v.w, 200, "token", view{Title: "Token for " + t.Database, Nav: "databases", Me: v.me, CSRF: v.csrf, Data: d})
	return "", nil
}

type sessionsData struct {
	api.MySessions
}

// sessions is "My sessions": the person's live database sessions and
// sign-in sessions, each with a button that ends it.
func (p *Portal) sessions(v *visit) (string, view, error) {
	mine, err := v.api.MySessions(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	return "sessions", view{Title: "My sessions", Nav: "sessions", Data: sessionsData{MySessions: mine}}, nil
}

// endSession ends one of the person's own sessions: a live database
// session, or a sign-in session (this browser's included, which signs it
// out).
func (p *Portal) endSession(v *visit) (string, error) {
	ctx, id := v.r.Context(), v.r.PostForm.Get("id")
	switch v.r.PostForm.Get("kind") {
	case "live":
		if _, err := v.api.EndLive(ctx, id); err != nil {
			return "", err
		}
		return "/sessions?done=live-ended", nil
	case "signin":
		if _, err := v.api.EndSession(ctx, id); err != nil {
			return "", err
		}
		if id == v.me.SessionID {
			clearCookie(v.w)
			return "/", nil
		}
		return "/sessions?done=session-ended", nil
	}
	return "", &client.Error{Status: 400, Message: "unknown kind of session: use the buttons on the sessions page"}
}

// signOut ends this browser's sign-in session.
func (p *Portal) signOut(v *visit) (string, error) {
	if err := v.api.Logout(v.r.Context()); err != nil {
		return "", err
	}
	clearCookie(v.w)
	return "/", nil
}
