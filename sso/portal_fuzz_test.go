package sso_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/sso"
)

// FuzzLocalPath checks that whatever a link or an identity provider puts
// in next, the portal is sent to a path on keygate's own host: the input
// itself when it is one, "/" otherwise.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{
		"/", "/databases", "/databases?engine=postgres#top", "", "//evil.com", "/\\evil.com", "\\\\evil.com",
		"https://evil.com", "HTTPS://evil.com", "javascript:alert(1)", "/\t/evil.com", "/%2F/evil.com",
		"/\x00", "/é", "/a b", "/.//evil.com", "/@evil.com", "/?//evil.com", "/#//evil.com",
	} {
		f.Add(s)
	}
	base, _ := url.Parse("https://keygate.example:8443/somewhere/")
	f.Fuzz(func(t *testing.T, p string) {
		got := sso.LocalPath(p)
		if got != "/" && got != p {
			t.Fatalf("LocalPath(%q) = %q: want the input or /", p, got)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("LocalPath(%q) = %q: not a local path", p, got)
		}
		// Browsers drop tabs and newlines from URLs and read backslashes
		// as slashes before resolving them; the result must stay on the
		// host either way.
		seen := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		u, err := base.Parse(seen)
		if err != nil {
			t.Fatalf("LocalPath(%q) = %q, which does not parse: %v", p, got, err)
		}
		if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil {
			t.Fatalf("LocalPath(%q) = %q leads to %s", p, got, u)
		}
	})
}
