package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runRoot runs keygate in-process with args, and returns what it printed
// and its error.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("KEYGATE_CONFIG", "")
	root := newRoot()
	var out strings.Builder
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "user", "lst"}, `unknown command "lst" for "keygate admin user"; did you mean "list"? (see keygate admin user --help)`},
		{[]string{"admin", "foo"}, `unknown command "foo" for "keygate admin" (see keygate admin --help)`},
		{[]string{"admn"}, `unknown command "admn" for "keygate"; did you mean "admin"? (see keygate --help)`},
		{[]string{"admin", "group", "delet", "x"}, `unknown command "delet" for "keygate admin group"; did you mean "delete"?`},
		{[]string{"db", "lsit"}, `unknown command "lsit" for "keygate db"; did you mean "list"?`},
		{[]string{"admin", "user", "list", "extra"}, `unknown command "extra" for "keygate admin user list" (see keygate admin user list --help)`},
		{[]string{"admin", "user", "show"}, "keygate admin user show needs NAME (got 0 arguments)"},
	} {
		_, err := runRoot(t, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("keygate %s: %v; want a usage error %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestEveryGroupCommandRefusesAStrayWord walks the whole tree, so that a
// group command added later is covered too. A group command is one that,
// run bare, prints its help; a command with subcommands that does work of
// its own (keygate audit) checks its arguments itself.
func TestEveryGroupCommandRefusesAStrayWord(t *testing.T) {
	var parents [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			parents = append(parents, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(), nil)
	groups := map[string]bool{}
	for _, path := range parents {
		name := strings.Join(append([]string{"keygate"}, path...), " ")
		if out, err := runRoot(t, path...); err != nil || !strings.Contains(out, "Available Commands:") {
			continue
		}
		groups[name] = true
		_, err := runRoot(t, append(path, "xyzzy")...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), `unknown command "xyzzy" for "`+name+`"`) {
			t.Errorf("%s xyzzy: %v; want a usage error naming the unknown command", name, err)
		}
	}
	for _, want := range []string{"keygate", "keygate admin", "keygate admin user", "keygate admin group", "keygate admin session", "keygate db"} {
		if !groups[want] {
			t.Errorf("%s run bare did not print its help; groups found: %v", want, groups)
		}
	}
}

func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 members"}, {1, "1 member"}, {2, "2 members"}} {
		if got := plural(tc.n, "member", "members"); got != tc.want {
			t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
