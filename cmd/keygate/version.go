package main

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set at build time by scripts/build and the Dockerfile:
//
//	-ldflags "-X main.version=v1.2.0 -X main.commit=887f31d -X main.date=2026-03-01T12:00:00Z"
//
// A binary built without them falls back to what the Go toolchain recorded
// (buildInfo), so that even a plain go build names its commit. An unstamped
// version is "dev"; currentBuild().Version also knows a go install release.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// shortCommit is how many hex digits of a commit hash are shown, as git
// rev-parse --short does by default.
const shortCommit = 7

// pseudoVersion matches the version the Go toolchain derives from a commit
// that has no release tag (v0.0.0-20260301120000-887f31d0a1b2): it names a
// commit, not a release, so keygate says "dev" for it.
var pseudoVersion = regexp.MustCompile(`-(0\.)?\d{14}-[0-9a-f]{12}(\+dirty)?$`)

// buildInfo is what a keygate binary knows about how it was built.
type buildInfo struct {
	Version    string // release version, or "dev"
	Commit     string // short commit hash; empty when unknown
	Date       string // build date, stamped; RFC 3339
	CommitTime string // the commit's date, from the toolchain; RFC 3339
	Modified   bool   // built from a tree with uncommitted changes
}

// currentBuild combines the stamped variables with the toolchain's record:
// a stamped value wins, the record fills in the rest. go install
// module@vX.Y.Z has no stamp but records the release version.
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date}
	if b.Version == "dev" {
		b.Version = ""
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		b = b.fill(info)
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// fill completes b from the toolchain's build record without overriding
// what was stamped.
func (b buildInfo) fill(info *debug.BuildInfo) buildInfo {
	v := info.Main.Version
	if b.Version == "" && v != "" && v != "(devel)" && !pseudoVersion.MatchString(v) && !strings.HasSuffix(v, "+dirty") {
		b.Version = v
	}
	stamped := b.Commit != ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if !stamped {
				b.Commit = s.Value
			}
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			if !stamped {
				b.Modified = s.Value == "true"
			}
		}
	}
	if len(b.Commit) > shortCommit {
		b.Commit = b.Commit[:shortCommit]
	}
	return b
}

// String is the line keygate version and keygate --version print:
// "keygate v1.2.0 (commit 887f31d, built 2026-03-01T12:00:00Z)".
func (b buildInfo) String() string {
	var details []string
	if b.Commit != "" {
		c := "commit " + b.Commit
		if b.Modified {
			c += " with uncommitted changes"
		}
		details = append(details, c)
	}
	switch {
	case b.Date != "":
		details = append(details, "built "+b.Date)
	case b.CommitTime != "":
		details = append(details, "committed "+b.CommitTime)
	}
	if len(details) == 0 {
		return "keygate " + b.Version
	}
	return fmt.Sprintf("keygate %s (%s)", b.Version, strings.Join(details, ", "))
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keygate's version, commit and build date",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), currentBuild())
		},
	}
}

// setVersion makes keygate --version print the same line as keygate
// version.
func setVersion(root *cobra.Command) {
	root.Version = currentBuild().String()
	root.SetVersionTemplate("{{.Version}}\n")
}
