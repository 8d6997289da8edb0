#!/usr/bin/env bash
# Benchmark keygate's PostgreSQL gateway against a direct connection to
# PostgreSQL and against pgbouncer, and its MySQL gateway against a direct
# connection to MariaDB, with and without keygate's per-person upstream
# pools, measured in the same run.
#
#   bench/run.sh                      # 10 s per run, 8 clients, 3 runs of each
#   DURATION=30 CLIENTS=16 bench/run.sh
#   RUNS=5 bench/run.sh               # runs of each measurement; the table shows medians
#   PEOPLE=500 bench/run.sh           # people taking turns in connect-per-txn-people (default 200)
#   PROTOCOL=prepared bench/run.sh    # pgbench -M: simple (default), extended, prepared
#   ENGINES=postgres bench/run.sh     # postgres, mysql, or postgres,mysql (default)
#   IDLE_CONNS=10000 bench/run.sh     # idle connections held through keygate (default 2000)
#   STATE=postgres bench/run.sh       # keygate's state in a PostgreSQL database, as servers sharing one keep it (default sqlite)
#
# Installs what is missing (Debian 12: pgbouncer, postgresql-15, and
# mariadb-server unless ENGINES leaves out mysql), builds keygate and the
# driver into a temporary directory, and runs the driver, which prints a
# table and writes bench/out/results-<timestamp>.json.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
PROTOCOL=${PROTOCOL:-simple}
ENGINES=${ENGINES:-postgres,mysql}
IDLE_CONNS=${IDLE_CONNS:-2000}
RUNS=${RUNS:-3}
PEOPLE=${PEOPLE:-200}
STATE=${STATE:-sqlite}
case $DURATION in
*[!0-9]*) ;;      # has a unit already, e.g. 30s or 2m
*) DURATION=${DURATION}s ;;
esac

sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi

# uses ENGINE succeeds when ENGINES names it.
uses() {
	case ,$ENGINES, in
	*,"$1",*) return 0 ;;
	esac
	return 1
}

packages=()
if uses postgres; then
	if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
		packages+=(pgbouncer)
	fi
	if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
		packages+=(postgresql-15)
	fi
fi
if uses mysql && ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
	packages+=(mariadb-server)
fi
if [ ${#packages[@]} -gt 0 ]; then
	echo "Installing ${packages[*]}"
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if ! command -v go >/dev/null; then
	echo "run.sh: go is not on PATH; install Go $(sed -n 's/^go //p' go.mod) or newer" >&2
	exit 1
fi

tmp=$(mktemp -d -t keygate-bench-bin-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

version=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
echo "Building keygate ($version)"
go build -ldflags "-X main.version=$version" -o "$tmp/keygate" ./cmd/keygate
go build -o "$tmp/bench" ./bench

"$tmp/bench" -keygate "$tmp/keygate" -duration "$DURATION" -clients "$CLIENTS" -protocol "$PROTOCOL" -engines "$ENGINES" -idle-conns "$IDLE_CONNS" \
	-runs "$RUNS" -people "$PEOPLE" -state "$STATE" -out bench/out
