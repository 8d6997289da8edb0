package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// aliceDBs is a db list in which orders and reports share an upstream, as
// two databases of one PostgreSQL server do, and billing has its own.
var aliceDBs = []api.DatabaseAccess{
	{Database: "billing", Access: "ro", Address: "billing.internal:5432", Gateway: "keygate.example.com:5433"},
	{Database: "orders", Access: "ro", Address: "pg1.internal:5432", Gateway: "keygate.example.com:5433"},
	{Database: "orders", Access: "rw", Address: "pg1.internal:5432", Gateway: "keygate.example.com:5433"},
	{Database: "reports", Access: "ro", Address: "pg1.internal:5432", Gateway: "keygate.example.com:5433"},
}

// mixedDBs is a db list with a PostgreSQL and a MySQL database, each
// behind keygate's gateway for its engine.
var mixedDBs = []api.DatabaseAccess{
	{Database: "orders", Access: "ro", Engine: "postgres", Address: "pg1.internal:5432", Gateway: "keygate.example.com:5433"},
	{Database: "orders_my", Access: "ro", Engine: "mysql", Address: "my1.internal:3306", Gateway: "keygate.example.com:3307"},
	{Database: "orders_my", Access: "rw", Engine: "mysql", Address: "my1.internal:3306", Gateway: "keygate.example.com:3307"},
}

func TestResolveTarget(t *testing.T) {
	tests := []struct {
		name string
		in   targetInput
		want target
		// fails names a part of the error a usage mistake must give.
		fails string
	}{
		{name: "argument", in: targetInput{arg: "orders"}, want: target{database: "orders"}},
		{name: "profile", in: targetInput{profileDB: "orders", profileAccess: "rw"}, want: target{database: "orders", level: "rw"}},
		{name: "argument over profile", in: targetInput{arg: "billing", profileDB: "orders"}, want: target{database: "billing"}},
		{name: "nothing named", in: targetInput{profile: "work"}, fails: "profile work"},
		{name: "aws flags", in: targetInput{user: "alice", dbs: aliceDBs, flags: tokenFlags{hostname: "billing.internal", port: 5432, username: "alice.ro", region: "us-east-1"}},
			want: target{database: "billing", level: "ro"}},
		{name: "host name case and trailing dot", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "Billing.Internal.", port: 5432}},
			want: target{database: "billing"}},
		{name: "hostname without port", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "billing.internal"}}, want: target{database: "billing"}},
		{name: "wrong port", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "billing.internal", port: 5433}}, fails: "billing at billing.internal:5432"},
		{name: "unknown host", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "nope", port: 5432}}, fails: "no database you may use is at nope:5432"},
		{name: "no databases at all", in: targetInput{flags: tokenFlags{hostname: "nope", port: 5432}}, fails: "keygate access explain"},
		{name: "shared upstream", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 5432}}, fails: "(orders, reports): name one"},
		{name: "shared upstream, profile picks", in: targetInput{profileDB: "reports", dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 5432}},
			want: target{database: "reports"}},
		{name: "shared upstream, argument picks", in: targetInput{arg: "orders", dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 5432}},
			want: target{database: "orders"}},
		{name: "argument elsewhere", in: targetInput{arg: "billing", dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 5432}},
			fails: "database billing is at billing.internal:5432"},
		{name: "argument not listed is the server's to refuse", in: targetInput{arg: "secret", dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 5432}},
			want: target{database: "secret"}},
		{name: "gateway needs a database", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 5433}},
			fails: "is keygate's gateway"},
		{name: "gateway with argument", in: targetInput{arg: "billing", dbs: aliceDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 5433}},
			want: target{database: "billing"}},
		{name: "gateway with profile database", in: targetInput{profileDB: "orders", dbs: aliceDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 5433}},
			want: target{database: "orders"}},
		{name: "mysql upstream", in: targetInput{user: "alice", dbs: mixedDBs, flags: tokenFlags{hostname: "my1.internal", port: 3306, username: "alice.rw"}},
			want: target{database: "orders_my", level: "rw"}},
		{name: "mysql gateway with argument", in: targetInput{arg: "orders_my", dbs: mixedDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 3307}},
			want: target{database: "orders_my"}},
		{name: "mysql gateway, profile database there", in: targetInput{profileDB: "orders_my", dbs: mixedDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 3307}},
			want: target{database: "orders_my"}},
		{name: "mysql gateway, profile database on the other engine", in: targetInput{profileDB: "orders", dbs: mixedDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 3307}},
			fails: "(orders_my): name the database, as in keygate db token orders_my"},
		{name: "mysql gateway, profile database not listed", in: targetInput{profileDB: "gone", dbs: mixedDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 3307}},
			want: target{database: "gone"}},
		{name: "postgres argument at the mysql gateway", in: targetInput{arg: "orders", dbs: mixedDBs, flags: tokenFlags{hostname: "keygate.example.com", port: 3307}},
			fails: "database orders is at pg1.internal:5432 (through keygate: keygate.example.com:5433)"},
		{name: "port without hostname", in: targetInput{arg: "orders", flags: tokenFlags{port: 5432}}, fails: "--port needs --hostname"},
		{name: "port out of range", in: targetInput{dbs: aliceDBs, flags: tokenFlags{hostname: "pg1.internal", port: 70000}}, fails: "1 to 65535"},
		{name: "username is the person", in: targetInput{arg: "orders", user: "alice", profileAccess: "rw", flags: tokenFlags{username: "alice"}},
			want: target{database: "orders", level: "rw"}},
		{name: "username role chooses level", in: targetInput{arg: "orders", user: "alice", profileAccess: "ro", flags: tokenFlags{username: "alice.rw"}},
			want: target{database: "orders", level: "rw"}},
		{name: "admin role", in: targetInput{arg: "orders", user: "alice", flags: tokenFlags{username: "alice.admin"}}, want: target{database: "orders", level: "admin"}},
		{name: "dotted person name", in: targetInput{arg: "orders", user: "alice.smith", flags: tokenFlags{username: "alice.smith.ro"}},
			want: target{database: "orders", level: "ro"}},
		{name: "someone else", in: targetInput{arg: "orders", user: "alice", flags: tokenFlags{username: "bob.ro"}}, fails: "--username bob.ro is not you"},
		{name: "not a level", in: targetInput{arg: "orders", user: "alice", flags: tokenFlags{username: "alice.superuser"}}, fails: "alice.ro, alice.rw or alice.admin"},
		{name: "username agrees with access", in: targetInput{arg: "orders", user: "alice", flags: tokenFlags{username: "alice.rw", access: "rw"}},
			want: target{database: "orders", level: "rw"}},
		{name: "username conflicts with access", in: targetInput{arg: "orders", user: "alice", flags: tokenFlags{username: "alice.ro", access: "rw"}},
			fails: "asks for access ro but --access asks for rw"},
		{name: "access over profile", in: targetInput{arg: "orders", profileAccess: "ro", flags: tokenFlags{access: "admin"}}, want: target{database: "orders", level: "admin"}},
	}
	for _, tt := range tests {
		got, err := resolveTarget(tt.in)
		if tt.fails != "" {
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.fails) {
				t.Errorf("%s: got %+v, %v; want a usage error naming %q", tt.name, got, err, tt.fails)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// Mistakes that need no server are found before it is asked anything.
func TestCheckOffline(t *testing.T) {
	for _, in := range []targetInput{
		{profile: "default"},
		{arg: "orders", flags: tokenFlags{port: 5432}},
		{flags: tokenFlags{hostname: "h", port: -1}},
	} {
		var ue usageError
		if err := checkOffline(in); !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", in, err)
		}
	}
	for _, in := range []targetInput{{arg: "orders"}, {profileDB: "orders"}, {flags: tokenFlags{hostname: "h", port: 5432}}} {
		if err := checkOffline(in); err != nil {
			t.Errorf("%+v: %v", in, err)
		}
	}
}
