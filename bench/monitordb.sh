#!/usr/bin/env bash
# MonitorDB (crates/atoll-monitor) side by side with Debian's Prometheus:
# ingest, bytes per sample, query latency, and one process scraping 1,000
# synthetic targets on loopback. Builds in release mode, installs Debian's
# `prometheus` when missing (it is run by hand on 127.0.0.1 with temporary
# storage, never as the system service), and writes the monitordb-bench
# section of bench/RESULTS.md. Extra arguments go to monitordb-bench
# (e.g. --targets 200 --scrape-secs 120, or --no-prometheus). About 10 min.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian's prometheus (its service is kept from starting)" >&2
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

cargo build --release -p atoll-bench --bin monitordb-bench

# Three processes hold a connection per target (and the targets process a
# listener each): far past the usual 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec target/release/monitordb-bench --out bench/RESULTS.md "$@"
