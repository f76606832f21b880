#!/usr/bin/env bash
# Run Attune's whole test suite (lint, types, tests on SQLite and PostgreSQL).
# Installs and starts PostgreSQL from Debian's packages when none answers on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

pg_answers() {
  .venv/bin/python - "$1" <<'PY'
import sys
import psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
except Exception:
    sys.exit(1)
PY
}

if [ -z "${ATTUNE_TEST_PG:-}" ]; then
  if pg_answers "postgresql://postgres@127.0.0.1:5432/postgres"; then
    export ATTUNE_TEST_PG="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
  else
    echo "test: no PostgreSQL answers on 127.0.0.1:5432; installing Debian's"
    if ! command -v pg_ctlcluster >/dev/null; then
      apt-get update -qq || echo "test: apt-get update failed; installing from the package cache"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 30); do pg_isready -q && break; sleep 1; done
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$(id -un)'\"" | grep -q 1 \
      || su postgres -c "createuser --superuser $(id -un)"
    export ATTUNE_TEST_PG="postgresql+psycopg://$(id -un)@/postgres?host=/var/run/postgresql"
  fi
fi
export ATTUNE_REQUIRE_PG=1

echo "test: ruff"
.venv/bin/ruff check src tests bench
echo "test: mypy"
.venv/bin/mypy
echo "test: pytest (PostgreSQL: $ATTUNE_TEST_PG)"
.venv/bin/python -m pytest -n "${ATTUNE_TEST_WORKERS:-2}" "$@"
