#!/usr/bin/env bash
# Benchmark provisioning through keygate's SCIM 2.0 endpoint at scale:
# 10,000 users, 1,000 groups and 100,000 memberships over HTTPS, then the
# lookups identity providers make against the full store.
#
#   bench/scim/run.sh                     # the defaults, 8 requests in flight
#   WORKERS=16 bench/scim/run.sh
#   bench/scim/run.sh -batch 1 -single 0  # any flag of the driver: -help lists them
#
# Needs only Go: keygate runs without a database for this. Builds keygate
# and the driver into a temporary directory and runs the driver, which
# prints tables and writes bench/out/scim-<timestamp>.json.
set -euo pipefail

cd "$(dirname "$0")/../.."

WORKERS=${WORKERS:-8}

if ! command -v go >/dev/null; then
	echo "run.sh: go is not on PATH; install Go $(sed -n 's/^go //p' go.mod) or newer" >&2
	exit 1
fi

tmp=$(mktemp -d -t keygate-scim-bench-bin-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

version=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
echo "Building keygate ($version)"
go build -ldflags "-X main.version=$version" -o "$tmp/keygate" ./cmd/keygate
go build -o "$tmp/scim-bench" ./bench/scim

"$tmp/scim-bench" -keygate "$tmp/keygate" -workers "$WORKERS" -out bench/out "$@"
