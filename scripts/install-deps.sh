#!/usr/bin/env bash
# Installs what Atoll's playground and tests need from Debian's packages,
# only when missing. Keeps the packages' own default server from starting.
set -euo pipefail

need=()
# Building: atoll links Debian's SQLite (found through pkg-config) rather
# than compiling SQLite's C into every cold build.
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
# Standby clusters are seeded from a hot copy (issue 13).
command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup)
[ -f /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
# State transfers of TLS clusters run rsync through stunnel.
command -v stunnel >/dev/null 2>&1 || need+=(stunnel4)
if [ "${ATOLL_WITH_SYSBENCH:-1}" = 1 ]; then
  command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
fi
# Tests of hosts as separate machines: `atoll deploy` reaches one sshd
# per loopback "host"; network cuts are nftables rules in namespaces.
if [ "${ATOLL_WITH_TEST_HOSTS:-1}" = 1 ]; then
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
  # The fault campaign jumps one host's clock with libfaketime.
  compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || need+=(faketime)
  # deploy's systemd units are checked with systemd's own verifier.
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
fi
# The generated scrape configuration and remote write are tested against
# Debian's Prometheus (run as a test process, never as the service).
if [ "${ATOLL_WITH_PROMETHEUS:-1}" = 1 ]; then
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
fi
if [ "${ATOLL_WITH_BROWSER:-1}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
# The OpenAPI fuzzer (tests/openapi.rs): schemathesis from PyPI, pinned, in
# a venv of its own (Debian's Python refuses pip installs outside one).
SCHEMATHESIS=4.32.5
fuzzer_dir="${ATOLL_TOOLS_DIR:-${HOME:-/root}/.cache/atoll}/schemathesis-$SCHEMATHESIS"
want_fuzzer=0
if [ "${ATOLL_WITH_FUZZER:-1}" = 1 ] && ! "$fuzzer_dir/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS"; then
  want_fuzzer=1
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
fi

install_fuzzer() {
  [ $want_fuzzer = 1 ] || return 0
  echo "installing: schemathesis $SCHEMATHESIS in $fuzzer_dir" >&2
  rm -rf "$fuzzer_dir"
  python3 -m venv "$fuzzer_dir"
  "$fuzzer_dir/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS" >&2
}

if [ ${#need[@]} -eq 0 ]; then
  install_fuzzer
  exit 0
fi

echo "installing: ${need[*]}" >&2
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
install_fuzzer
