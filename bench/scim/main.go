// Command scim measures provisioning through keygate's SCIM 2.0 endpoint at
// the size of a mid-sized company: it starts the real keygate server, pushes
// users, groups and memberships over HTTPS the way Azure AD (Entra ID) and
// Okta do, several requests in flight, then times the reads identity
// providers make against the full store. It prints operations per second
// and latencies, keygate's memory and the size of its files, and writes
// every number to bench/out/scim-<UTC time>.json.
//
// The requirement it reports on: 10,000 users, 1,000 groups and 100,000
// memberships provisioned through the endpoint in under 2 minutes on a
// 2-core machine, with a userName eq lookup that stays fast at that size.
// It measures and prints; it asserts nothing about speed.
//
// bench/scim/run.sh builds keygate and runs this; see bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// goal is the provisioning time the requirement allows.
const (
	goal     = 2 * time.Minute
	goalText = "2-minute"
)

// stopGrace is how long keygate gets to exit after SIGTERM.
const stopGrace = 20 * time.Second

type options struct {
	keygateBin  string
	users       int
	groups      int
	memberships int
	workers     int
	batch       int
	single      int
	lookups     int
	reads       int
	seed        uint64
	outDir      string
}

func main() {
	var o options
	flag.StringVar(&o.keygateBin, "keygate", "", "the keygate binary to benchmark (bench/scim/run.sh builds it)")
	flag.IntVar(&o.users, "users", 10_000, "users to create with POST /Users")
	flag.IntVar(&o.groups, "groups", 1_000, "groups to create with POST /Groups")
	flag.IntVar(&o.memberships, "memberships", 100_000, "memberships to add with PATCH /Groups/{id}, in all")
	flag.IntVar(&o.workers, "workers", 8, "requests in flight while provisioning")
	flag.IntVar(&o.batch, "batch", 100, "members added per PATCH in the batched phase")
	flag.IntVar(&o.single, "single", 2_000, "of -memberships, how many are added one per PATCH after the batches")
	flag.IntVar(&o.lookups, "lookups", 1_000, "userName eq lookups at full size, half of them in another case")
	flag.IntVar(&o.reads, "reads", 20, "times each group read and the first page of users are timed")
	flag.Uint64Var(&o.seed, "seed", 1, "seed for the group sizes, the members and the looked-up names")
	flag.StringVar(&o.outDir, "out", filepath.Join("bench", "out"), "directory for the JSON results")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/scim:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench/scim: interrupted; everything it started is stopped and removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench/scim:", err)
		os.Exit(1)
	}
}

func (o options) validate() error {
	if o.keygateBin == "" {
		return errors.New("-keygate is required: run bench/scim/run.sh, or build keygate with `go build -o /tmp/keygate ./cmd/keygate` and pass -keygate /tmp/keygate")
	}
	if _, err := os.Stat(o.keygateBin); err != nil {
		return fmt.Errorf("-keygate: %w", err)
	}
	switch {
	case o.users < 1:
		return fmt.Errorf("-users %d: at least 1", o.users)
	case o.groups < 1:
		return fmt.Errorf("-groups %d: at least 1", o.groups)
	case o.memberships < 0 || int64(o.memberships) > int64(o.users)*int64(o.groups):
		return fmt.Errorf("-memberships %d: between 0 and users × groups (%d)", o.memberships, int64(o.users)*int64(o.groups))
	case o.workers < 1 || o.workers > 256:
		return fmt.Errorf("-workers %d: between 1 and 256", o.workers)
	case o.batch < 1 || o.batch > 1000:
		return fmt.Errorf("-batch %d: between 1 and 1000 (a PATCH body is limited to 1 MiB)", o.batch)
	case o.single < 0 || o.single > o.memberships:
		return fmt.Errorf("-single %d: between 0 and -memberships (%d)", o.single, o.memberships)
	case o.lookups < 0:
		return fmt.Errorf("-lookups %d: 0 or more", o.lookups)
	case o.reads < 0:
		return fmt.Errorf("-reads %d: 0 or more", o.reads)
	}
	return nil
}

// run starts keygate, provisions, reads, reports, and takes everything
// down again, also when ctx is cancelled.
func run(ctx context.Context, o options, w io.Writer) (err error) {
	rep := newReport(o)
	dir, err := os.MkdirTemp("", "keygate-scim-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(w, "Starting keygate")
	kg, err := startKeygate(ctx, o.keygateBin, dir)
	if err != nil {
		return err
	}
	defer func() {
		if serr := kg.Stop(stopGrace); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	rep.Versions.Keygate = kg.version(ctx)
	token, err := kg.scimToken(ctx)
	if err != nil {
		return err
	}
	c, err := newClient(kg.scimURL, kg.caFile, token, o.workers)
	if err != nil {
		return err
	}
	defer c.close()
	fmt.Fprintf(w, "  %s, SCIM at %s, data_dir %s\n", rep.Versions.Keygate, kg.scimURL, kg.dataDir)

	p, err := newPlan(o)
	if err != nil {
		return err
	}
	rep.Shape = p.shape()
	fmt.Fprintf(w, "Provisioning %d users, %d groups and %d memberships with %d workers (largest group %d members, median %d)\n",
		o.users, o.groups, o.memberships, o.workers, rep.Shape.Largest, rep.Shape.Median)
	if err := provision(ctx, c, kg, p, o, rep, w); err != nil {
		return err
	}
	fmt.Fprintln(w, "Reading at full size, one request at a time")
	if err := readBack(ctx, c, kg, p, o, rep, w); err != nil {
		return err
	}

	if rep.KeygateMemory.EndRSSKiB, rep.KeygateMemory.HWMKiB, err = proc.Memory(kg.Pid()); err != nil {
		return err
	}
	if rep.DataFiles, err = dataFiles(kg.dataDir); err != nil {
		return err
	}
	if rep.KeygateLog, err = scanLog(kg.LogPath()); err != nil {
		return err
	}
	rep.Machine.LoadAfter = proc.LoadAverage()
	rep.print(w)
	path, err := rep.save(o.outDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRaw results: %s\n", path)
	if n := rep.failures(); n > 0 {
		return fmt.Errorf("%d requests failed (see above): the numbers do not describe a clean run", n)
	}
	return nil
}
