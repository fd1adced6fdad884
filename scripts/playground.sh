#!/usr/bin/env bash
# Builds atoll and starts the playground: a local platform with three hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
ATOLL_WITH_BROWSER=0 ATOLL_WITH_SYSBENCH=0 ATOLL_WITH_TEST_HOSTS=0 scripts/install-deps.sh
cargo build --release -p atoll
exec target/release/atoll playground "$@"
