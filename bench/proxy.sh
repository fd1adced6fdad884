#!/usr/bin/env bash
# Issue 5's proxy benchmark: on one playground cluster, in one run,
#   1. sysbench oltp_point_select and oltp_read_write direct to the writer,
#      through `atoll proxy` and through HAProxy (TCP mode), interleaved,
#      repeated, medians: TPS, p95, ratios, each proxy's CPU per query;
#   2. each proxy's RSS with 1000 idle authenticated client connections;
#   3. writer failover (SIGKILL of the writer's mariadbd), 10 trials, the
#      longest wait for an acknowledged write through each proxy.
# Appends a dated section to bench/RESULTS.md. Run from anywhere; extra
# arguments go to bench/proxy_bench.py (e.g. --rounds 5 --time 30);
# `--no-append` as the first argument prints the section without writing it.
# Takes about 13 minutes (5 rounds of 6 sysbench runs, 10 failover
# trials). Needs sysbench, haproxy, perf (optional) and the playground's
# addresses (127.0.0.11-13) free.
set -euo pipefail
cd "$(dirname "$0")/.."
append=1
if [[ "${1:-}" == "--no-append" ]]; then append=0; shift; fi
for tool in sysbench haproxy mariadb python3; do
  command -v $tool >/dev/null || { echo "proxy.sh: $tool is not installed" >&2; exit 1; }
done
# Someone else's playground (or a leftover) on the same addresses would be
# measured instead of ours.
port=18791 agent_port=7191
busy=$(ss -Htln | awk '{print $4}' | grep -E "^127\.0\.0\.1[123]:(3306|4567|6033|6034|6035|$agent_port)$|^127\.0\.0\.1:(730[678]|$port)$" || true)
if [[ -n "$busy" ]]; then
  echo "proxy.sh: addresses in use, stop what listens there first:" $busy >&2
  exit 1
fi

cargo build --release -p atoll >/dev/null
bin=target/release/atoll
work=$(mktemp -d /tmp/atoll-bench-proxy.XXXXXX)
chmod 755 "$work"  # mariadbd runs as mysql and must reach its data directory
dir=$work/pg
export ATOLL_CONFIG_DIR=$work/cli
"$bin" playground --dir "$dir" --listen 127.0.0.1:$port --agent-port $agent_port >"$work/playground.out" 2>&1 &
pg=$!
cleanup() {
  # our HAProxy, if the Python driver could not stop it
  if [[ -f $work/haproxy.pid ]]; then
    hp=$(cat "$work/haproxy.pid")
    if grep -qa "$work/haproxy.cfg" "/proc/$hp/cmdline" 2>/dev/null; then kill "$hp" 2>/dev/null || true; fi
  fi
  # keep the proxy's log before the playground removes its directory
  cp "$dir/agent-host1/proxies/demo__demo-proxy-z1/proxy.log" "$work/proxy-z1.log" 2>/dev/null || true
  kill -INT $pg 2>/dev/null || true
  wait $pg 2>/dev/null || true
  rm -rf "$work/cli" "$work/haproxy.sock"  # the dead playground's API token, HAProxy's socket
  echo "proxy.sh: logs, HAProxy config and raw numbers kept in $work" >&2
}
trap cleanup EXIT
until grep -q "playground is up" "$work/playground.out" 2>/dev/null; do
  kill -0 $pg 2>/dev/null || { cat "$work/playground.out"; exit 1; }
  sleep 0.2
done

python3 bench/proxy_bench.py --atoll "$bin" --pgdir "$dir" --work "$work" \
  --section "$work/section.md" --raw "$work/raw.json" --command "bash bench/proxy.sh${*:+ $*}" "$@"

if [[ $append == 1 ]]; then
  { echo; cat "$work/section.md"; } >>bench/RESULTS.md
  echo "proxy.sh: section appended to bench/RESULTS.md" >&2
fi
