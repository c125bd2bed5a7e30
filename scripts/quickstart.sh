#!/usr/bin/env bash
# First look at keyorch on its embedded defaults: a temporary SQLite database and the four bundled
# fake providers (started in-process). Sets up .venv, then runs `keyorch demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/keyorch demo "$@"
