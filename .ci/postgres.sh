#!/usr/bin/env bash
# Before the tests: make Debian's PostgreSQL binaries available for the e2e test in
# tests/test_store.py, which starts its own private cluster. This script starts no server, and it
# never fails CI: when the package cannot be installed it warns, and that test skips.
set -u
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "warning: PostgreSQL binaries missing and not installable here (needs root and apt-get);" \
    "the PostgreSQL store test will be skipped" >&2
  exit 0
fi
# Without a main cluster the package has no server to create or start.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common &&
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
if ! { apt-get update -qq &&
  apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold postgresql; } \
  >/dev/null 2>&1; then
  echo "warning: could not install the postgresql package; the PostgreSQL store test will be" \
    "skipped" >&2
fi
exit 0
