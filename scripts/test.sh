#!/usr/bin/env bash
# The test suite: unit tests and integration tests with real processes
# (server, agents, mariadbd) on loopback and a real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# A private MariaDB on a free loopback port, so MetaDB's conformance suite
# also runs on its MySQL back end. Stopped by its pid on exit.
metadb=$(mktemp -d /tmp/atoll-test-metadb.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --user=root --datadir="$metadb/data" --auth-root-authentication-method=socket >"$metadb/install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$metadb/data" --socket="$metadb/sock" --pid-file="$metadb/pid" \
  --bind-address=127.0.0.1 --port="$port" --innodb-buffer-pool-size=32M --skip-log-bin >"$metadb/server.log" 2>&1 &
mariadb_pid=$!
trap 'kill "$mariadb_pid" 2>/dev/null; wait "$mariadb_pid" 2>/dev/null; rm -rf "$metadb"' EXIT
for _ in $(seq 100); do
  mariadb --no-defaults -S "$metadb/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.1
done
mariadb --no-defaults -S "$metadb/sock" -uroot -e \
  "CREATE USER 'atoll'@'127.0.0.1' IDENTIFIED BY 'atoll-test'; GRANT ALL ON *.* TO 'atoll'@'127.0.0.1';"
export ATOLL_TEST_MYSQL_URL="mysql://atoll:atoll-test@127.0.0.1:$port/atoll"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features atoll/failpoints --no-fail-fast "$@"
else
  cargo test --workspace --features atoll/failpoints --no-fail-fast "$@"
fi
