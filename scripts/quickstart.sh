#!/usr/bin/env bash
# First look at keyorch on its embedded defaults: a SQLite file and the bundled fake providers.
# Sets up .venv, starts the four fake provider services, connects one keystore of each to a fresh
# SQLite database, creates a template that targets all four and a few keys, and shows them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if .venv/bin/keyorch demo --help >/dev/null 2>&1; then
  exec .venv/bin/keyorch demo "$@"
fi

work=$(mktemp -d /tmp/keyorch-quickstart.XXXXXX)
export KEYORCH_DATABASE_URL="sqlite:///$work/keyorch.db"
export KEYORCH_MASTER_KEY=$(.venv/bin/keyorch master-key generate)
export KEYORCH_USER=${KEYORCH_USER:-quickstart}
k() { .venv/bin/keyorch "$@"; }

.venv/bin/keyorch fakes serve --credentials-dir "$work/credentials" >"$work/fakes.json" 2>"$work/fakes.log" &
fakes_pid=$!
trap 'kill $fakes_pid 2>/dev/null || true; wait $fakes_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s $work/fakes.json ]] && break; sleep 0.1; done
echo "fake providers: $(cat "$work/fakes.json")"

k init
k vault create demo
for kind in aws_kms azure_key_vault google_kms ibm_key_protect; do
  mapfile -t args < <(.venv/bin/python -c 'import json,sys; [print(a) for a in json.load(open(sys.argv[1]))[sys.argv[2]]["connect"]]' "$work/fakes.json" "$kind")
  k --output json keystore connect --vault demo --name "$kind" "${args[@]}" >/dev/null
done
k keystore list
k template create --vault demo --name everywhere --naming-scheme 'DEMO-{label}' \
  --keystore aws_kms --keystore azure_key_vault --keystore google_kms --keystore ibm_key_protect >/dev/null
k key create --template everywhere --label orders --state active >/dev/null
k key create --template everywhere --label invoices >/dev/null
k key create --template everywhere --label archive --state active >/dev/null
k key deactivate archive >/dev/null
k key destroy archive >/dev/null
k key list --include-destroyed
k key show orders
echo "refused by the rules (exit codes 3):"
k key destroy orders || true
k keystore disconnect aws_kms || true
k audit list
