#!/usr/bin/env bash
# What TLS costs, side by side in one run: the API plain vs --tls, and the
# database path (direct and through atoll proxy) with and without client
# TLS on a TLS platform's cluster. Appends its section to bench/RESULTS.md.
# Arguments go to tls-bench (--rounds N --requests N --time S).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p atoll -p atoll-bench
exec target/release/tls-bench --out bench/RESULTS.md "$@"
