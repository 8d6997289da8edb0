package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/demo"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo [--engine postgres|mysql] [--keep]",
		Short: "Walk through the whole journey on a throwaway PostgreSQL or MariaDB",
		Long: `Start a throwaway PostgreSQL (or, with --engine mysql, MariaDB) from this
machine's binaries and a keygate server on embedded state, create alice
(analysts, read-only) and bob (engineers, read-write), and narrate the
journey: token, connect, what each may do, revocation of a live session with
the time it took, and the audit.

--engine mysql needs MariaDB's server installed (apt-get install
mariadb-server); keygate knows its database as orders_my and serves it on
its MySQL gateway.

Everything is cleaned up at the end. With --keep, everything stays running
and copy-paste client lines are printed; Ctrl-C cleans up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Engine != config.EnginePostgres && opts.Engine != config.EngineMySQL {
				return usageError{fmt.Errorf("--engine %q: use postgres or mysql (MariaDB)", opts.Engine)}
			}
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Engine, "engine", config.EnginePostgres, "the upstream to run the journey on: postgres, or mysql (MariaDB)")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "leave everything running and print client lines; Ctrl-C cleans up")
	return cmd
}
