#!/usr/bin/env bash
# Prints the path of a Python command-line tool installed from PyPI into its own venv
# on first use, pinned so a new release cannot change what `make test` expects. The
# package, its venv (`venv-NAME` in the hub's cache) and its command share NAME.
# Needs python3 with venv (scripts/ensure-deps.sh installs it).
# Usage: bin="$(scripts/ensure-pip-tool.sh NAME VERSION)"
set -euo pipefail

name=$1
version=$2
venv="${MCP_HUB_CACHE:-$HOME/.cache/mcp-hub}/venv-$name"
mkdir -p "$(dirname "$venv")"
# One install at a time (two test binaries, or a test and the script, may ask at once).
exec 9>"$venv.lock"
flock 9

if ! "$venv/bin/$name" --version 2>/dev/null | grep -q "$version"; then
  echo "ensure-$name: installing $name $version into $venv" >&2
  python3 -m venv "$venv" >&2 || { echo "ensure-$name: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$name==$version" >&2
  "$venv/bin/$name" --version >/dev/null || { echo "ensure-$name: $venv/bin/$name does not run" >&2; exit 1; }
fi
echo "$venv/bin/$name"
