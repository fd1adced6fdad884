#!/usr/bin/env bash
# Builds the server and the benchmark in release mode, then runs the
# platform benchmark against a real `atoll server` on loopback and writes
# its section of bench/RESULTS.md. Extra arguments go to platform-bench
# (e.g. --hosts 200 --requests 500).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p atoll -p atoll-bench

# The testkit harness locates the server binary through this variable.
export CARGO_BIN_EXE_atoll=target/release/atoll
exec target/release/platform-bench --atoll target/release/atoll --out bench/RESULTS.md "$@"
