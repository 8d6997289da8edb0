package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"session", "sesion", 1}, {"kitten", "sitting", 3}, {"query", "", 5}, {"abc", "abc", 0}} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"data_dir", "databases", "permission_sets", "assignments", "listen"}
	for _, tc := range []struct{ s, want string }{
		{"databse", "databases"},
		{"datadir", "data_dir"},
		{"Permission-Sets", "permission_sets"},
		{"lisen", "listen"},
		{"zzz", ""},
		{"permission", "permission_sets"},
		{"dat", ""},
		{"postgres", ""},
	} {
		if got := Closest(tc.s, keys); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
