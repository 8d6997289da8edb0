package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// rejectUnknownCommands makes every command that only groups others (admin,
// admin user, db, ...) refuse a word that names none of its subcommands,
// with a suggestion, and exit 2. Cobra suggests only at the root, and a group
// command run with a stray word would otherwise print its help and exit 0, so
// a typo in a script would pass unnoticed. Run bare, a group command still
// prints its help.
//
// The arguments check of every other command is made a usage error too, so
// that a stray word after a command (keygate admin user list extra) exits 2
// as well.
func rejectUnknownCommands(root *cobra.Command) {
	switch {
	case root.HasSubCommands() && !root.Runnable():
		root.Args = unknownSubcommand
		root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	case root.Args != nil:
		root.Args = asUsageError(root.Args)
	}
	for _, c := range root.Commands() {
		rejectUnknownCommands(c)
	}
}

// asUsageError marks the errors of an arguments check as usage errors.
func asUsageError(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := check(cmd, args)
		if err == nil {
			return nil
		}
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return usageError{fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
	}
}

// unknownSubcommand refuses any positional word given to a group command.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default, set only where it suggests
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		quoted := make([]string, len(s))
		for i, name := range s {
			quoted[i] = fmt.Sprintf("%q", name)
		}
		msg += "; did you mean " + strings.Join(quoted, " or ") + "?"
	}
	return usageError{fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())}
}
