#!/usr/bin/env bash
# Prints the path of the schemathesis binary the admin API's fuzz test runs
# (admin-api/tests/it/schemathesis.rs, scripts/schemathesis-admin.sh), installed from
# PyPI into a venv on first use, pinned so a new release cannot change what `make test`
# expects. Needs python3 with venv (scripts/ensure-deps.sh installs it).
# Usage: bin="$(scripts/ensure-schemathesis.sh)"; "$bin" run ...
set -euo pipefail

version=4.32.5
venv="${MCP_HUB_CACHE:-$HOME/.cache/mcp-hub}/venv-schemathesis"
mkdir -p "$(dirname "$venv")"
# One install at a time (two test binaries, or a test and the script, may ask at once).
exec 9>"$venv.lock"
flock 9

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "ensure-schemathesis: installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv" >&2 || { echo "ensure-schemathesis: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
  "$venv/bin/schemathesis" --version >/dev/null || { echo "ensure-schemathesis: $venv/bin/schemathesis does not run" >&2; exit 1; }
fi
echo "$venv/bin/schemathesis"
