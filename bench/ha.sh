#!/usr/bin/env bash
# The three-node platform on this machine: time to deploy, per-node
# footprint, and what clients see when the leader's node is lost.
# Appends its section to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p atoll -p atoll-bench
exec target/release/platform-ha-bench --atoll target/release/atoll --out bench/RESULTS.md "$@"
