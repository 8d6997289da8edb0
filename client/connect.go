package client

import (
	"net"
	"net/url"
	"strings"
)

// The settings below are what a database client needs to reach a
// database through keygate's gateway and verify it: `keygate db connect`
// runs clients with them, and the portal shows them to paste. None holds
// the token: it is the password, given apart from them.

// PSQLConnInfo is the libpq connection string for db through the gateway
// at gateway (host:port), as user, verifying the gateway's certificate
// and host name against the CA bundle in ca. It holds no secret.
func PSQLConnInfo(gateway, db, user, ca string) string {
	host, port := splitGateway(gateway)
	kv := [][2]string{{"host", host}, {"port", port}, {"dbname", db}, {"user", user}, {"sslmode", "verify-full"}, {"sslrootcert", ca}}
	parts := make([]string, 0, len(kv))
	for _, p := range kv {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+connInfoValue(p[1]))
		}
	}
	return strings.Join(parts, " ")
}

// connInfoValue quotes v for a libpq connection string when it needs it:
// single quotes, with backslash before a quote or a backslash.
func connInfoValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r'\\=") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// MySQLFlavour is the family a MySQL client comes from; their TLS flags
// differ.
type MySQLFlavour int

const (
	// MariaDBClient is MariaDB's client, whatever its name: Debian's
	// mysql is MariaDB's.
	MariaDBClient MySQLFlavour = iota
	// OracleMySQLClient is Oracle's, or one built from it (Percona's).
	OracleMySQLClient
)

// MySQLArgs is the command line on which a client of flavour reaches db
// through the gateway at gateway (host:port) as user, verifying the
// gateway's certificate and host name against the CA bundle in ca. It
// asks for TCP, which both clients would otherwise swap for a Unix socket
// when the host is localhost. It holds no secret.
func MySQLArgs(flavour MySQLFlavour, gateway, db, user, ca string) []string {
	host, port := splitGateway(gateway)
	argv := []string{"--protocol=TCP", "--host=" + host}
	if port != "" {
		argv = append(argv, "--port="+port)
	}
	argv = append(argv, "--user="+user, "--database="+db)
	if flavour == MariaDBClient {
		return append(argv, "--ssl-ca="+ca, "--ssl-verify-server-cert")
	}
	return append(argv, "--ssl-mode=VERIFY_IDENTITY", "--ssl-ca="+ca)
}

// JDBCURL is the JDBC URL of db through the gateway, verifying its
// certificate and host name against the CA bundle in ca: pgjdbc's for
// PostgreSQL, MariaDB Connector/J's for MySQL (the driver DBeaver and
// most tools use for both MySQL and MariaDB, and one that speaks
// caching_sha2_password over TLS). User and password go apart from it.
func JDBCURL(engine, gateway, db, ca string) string {
	host, port := splitGateway(gateway)
	hostPort := net.JoinHostPort(host, port)
	if port == "" {
		hostPort = host
	}
	q := url.Values{}
	if engine == "mysql" {
		q.Set("sslMode", "verify-full")
		q.Set("serverSslCert", ca)
		return "jdbc:mariadb://" + hostPort + "/" + url.PathEscape(db) + "?" + q.Encode()
	}
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", ca)
	return "jdbc:postgresql://" + hostPort + "/" + url.PathEscape(db) + "?" + q.Encode()
}

func splitGateway(gateway string) (host, port string) {
	host, port, err := net.SplitHostPort(gateway)
	if err != nil {
		return gateway, ""
	}
	return host, port
}
