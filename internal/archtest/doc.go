// Package archtest holds the test that keeps keygate's packages in the
// layers that ARCHITECTURE.md draws under "Rules of the house": identity
// and access stay pure, the gateway core knows no engine, each engine
// knows only its own upstream package, packet codecs (mysqlproto) stay
// free of keygate's layers, the store interface knows no backend, the
// client shares only wire types with the server, and dependencies point
// down. A rule that only lives in a document erodes one convenient import
// at a time; this test fails on the import that breaks it and names the
// rule.
//
// The package has no code of its own: the rules and their checker live in
// its test files, read from `go list -json` of the whole module.
package archtest
