#!/usr/bin/env bash
# The test suite: unit tests and integration tests with real processes
# (server, agents, mariadbd) on loopback and a real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features atoll/failpoints --no-fail-fast "$@"
else
  cargo test --workspace --features atoll/failpoints --no-fail-fast "$@"
fi
