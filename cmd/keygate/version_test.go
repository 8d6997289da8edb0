package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfoString(t *testing.T) {
	tests := []struct {
		name string
		b    buildInfo
		want string
	}{
		{"stamped", buildInfo{Version: "v1.2.0", Commit: "887f31d", Date: "2026-03-01T12:00:00Z"},
			"keygate v1.2.0 (commit 887f31d, built 2026-03-01T12:00:00Z)"},
		{"stamped date wins over commit time", buildInfo{Version: "v1.2.0", Commit: "887f31d", Date: "2026-03-01T12:00:00Z", CommitTime: "2026-02-01T00:00:00Z"},
			"keygate v1.2.0 (commit 887f31d, built 2026-03-01T12:00:00Z)"},
		{"toolchain record", buildInfo{Version: "dev", Commit: "887f31d", CommitTime: "2026-02-01T00:00:00Z", Modified: true},
			"keygate dev (commit 887f31d with uncommitted changes, committed 2026-02-01T00:00:00Z)"},
		{"nothing known", buildInfo{Version: "dev"}, "keygate dev"},
	}
	for _, tt := range tests {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestBuildInfoFill(t *testing.T) {
	record := func(version string) *debug.BuildInfo {
		return &debug.BuildInfo{
			Main: debug.Module{Path: "github.com/keygate/keygate", Version: version},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "887f31d62b1f27c74d27149d77372b9d765e386f"},
				{Key: "vcs.time", Value: "2026-02-01T00:00:00Z"},
				{Key: "vcs.modified", Value: "true"},
			},
		}
	}
	tests := []struct {
		name    string
		stamped buildInfo
		record  *debug.BuildInfo
		want    buildInfo
	}{
		{"go build in a checkout", buildInfo{}, record("v0.0.0-20260201000000-887f31d62b1f+dirty"),
			buildInfo{Commit: "887f31d", CommitTime: "2026-02-01T00:00:00Z", Modified: true}},
		{"go run", buildInfo{}, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, buildInfo{}},
		{"go install at a release", buildInfo{}, &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, buildInfo{Version: "v1.2.0"}},
		{"stamped by scripts/build", buildInfo{Version: "v1.2.0-dirty", Commit: "887f31d", Date: "2026-03-01T12:00:00Z"}, record("v0.0.0-20260201000000-887f31d62b1f+dirty"),
			buildInfo{Version: "v1.2.0-dirty", Commit: "887f31d", Date: "2026-03-01T12:00:00Z", CommitTime: "2026-02-01T00:00:00Z"}},
	}
	for _, tt := range tests {
		if got := tt.stamped.fill(tt.record); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// keygate --version and keygate version print the same line.
func TestVersionFlagMatchesCommand(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("keygate %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	cmd, flag := run("version"), run("--version")
	if cmd != flag || !strings.HasPrefix(cmd, "keygate ") || strings.Count(cmd, "\n") != 1 {
		t.Errorf("keygate version printed %q, keygate --version %q: want the same single line", cmd, flag)
	}
}
