#!/usr/bin/env bash
# The fault campaign's long profile (issue 12, suite 1): a release build,
# 300 faults by default (pass --faults N, --seed N, --duration-s S), the
# report appended to bench/RESULTS.md. Needs root (nftables, tmpfs mounts,
# cgroups); libfaketime (package faketime) for clock jumps.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p atoll -p atoll-bench
target="${CARGO_TARGET_DIR:-target}/release"
export CARGO_BIN_EXE_atoll="$(realpath "$target/atoll")"
exec "$target/fault-campaign" --out bench/RESULTS.md "$@"
