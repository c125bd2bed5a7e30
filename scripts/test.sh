#!/usr/bin/env bash
# Run the whole test suite: lints are in .ci/run; this starts a throw-away PostgreSQL
# server in a temporary directory (so the store tests run against it too), runs pytest,
# and stops the server again. Usage: bash scripts/test.sh [pytest args…]; KEYORCH_TEST_WORKERS=0 for one process
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-.venv/bin/python}

pg_bin=""
for candidate in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent)")" /usr/lib/postgresql/*/bin; do
  if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then pg_bin=$candidate; break; fi
done

cleanup() { :; }
if [[ -n "$pg_bin" && -z "${KEYORCH_TEST_POSTGRES_URL:-}" ]]; then
  pgdir=$(mktemp -d /tmp/keyorch-pg.XXXXXX)
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  run_pg=()
  if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$pgdir"
    run_pg=(runuser -u postgres --)
  fi
  "${run_pg[@]}" "$pg_bin/initdb" -D "$pgdir/data" -U keyorch --auth=trust -E UTF8 >/dev/null
  "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  cleanup() { "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
  trap cleanup EXIT
  export KEYORCH_TEST_POSTGRES_URL="postgresql://keyorch@127.0.0.1:$port/postgres"
  echo "PostgreSQL for tests at $KEYORCH_TEST_POSTGRES_URL"
fi

# Two pytest workers (KEYORCH_TEST_WORKERS; 0 runs in this process), each taking whole files: most tests
# wait on real subprocesses and sockets, so two workers halve the suite's time on a 2-core machine.
workers=${KEYORCH_TEST_WORKERS:-2}
xdist=()
if [[ "$workers" != 0 ]]; then xdist=(-n "$workers" --dist loadfile); fi
"$PY" -m pytest "${xdist[@]}" "$@"
