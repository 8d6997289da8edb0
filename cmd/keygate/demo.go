package main

import (
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/demo"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo [--keep]",
		Short: "Walk through the whole journey on a throwaway PostgreSQL",
		Long: `Start a throwaway PostgreSQL from this machine's binaries and a keygate
server on embedded state, create alice (analysts, read-only) and bob
(engineers, read-write), and narrate the journey: token, connect, what each
may do, revocation of a live session with the time it took, and the audit.

Everything is cleaned up at the end. With --keep, everything stays running
and copy-paste psql lines are printed; Ctrl-C cleans up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "leave everything running and print psql lines; Ctrl-C cleans up")
	return cmd
}
