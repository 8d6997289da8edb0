package client

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// A profile file comes from outside (an administrator, or whoever sends a
// file claiming to be one): whatever it holds, reading it never panics, and
// what it accepts is a profile keygate can use as it is.
func FuzzProfileFile(f *testing.F) {
	f.Add([]byte(`{"keygate_profile": 1, "profile": "default", "server": "https://keygate.example.com:8443", "ca_pem": "", "user": "alice", "credential": "kgs_abc", "expires": "2026-12-05T12:00:00Z"}`))
	f.Add([]byte(`{"keygate_profile": 2}`))
	f.Add([]byte(`{"keygate_profile": 1, "profile": "../../etc", "server": "https://h:1", "user": "a", "credential": "c"}`))
	f.Add([]byte(`{"keygate_profile": 1, "profile": "p", "server": "http://h:1", "user": "a", "credential": "c"}`))
	f.Add([]byte(`{"keygate_profile": 1, "profile": "p", "server": "https://h:1", "user": "a", "credential": "c", "ca_pem": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}`))
	f.Add([]byte("not json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pf, err := ReadProfileFile(path)
		if err != nil {
			if !utf8.ValidString(err.Error()) && utf8.Valid(data) {
				t.Errorf("error is not valid UTF-8: %q", err)
			}
			return
		}
		u, err := url.Parse(pf.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("accepted server %q", pf.Server)
		}
		if err := CheckProfileName(pf.Profile); err != nil || strings.ContainsAny(pf.Profile, `/\`) {
			t.Errorf("accepted profile name %q: %v", pf.Profile, err)
		}
		if pf.Credential == "" || pf.User == "" {
			t.Errorf("accepted a file without a session: %+v", pf)
		}
	})
}
