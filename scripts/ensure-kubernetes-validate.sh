#!/usr/bin/env bash
# Prints the path of the kubernetes-validate binary the deploy test runs
# (supervisor/tests/deploy.rs: the plain manifests and a worker Deployment against the
# Kubernetes API's JSON schemas, --strict), installed from PyPI into a venv on first use,
# pinned so a new release (or its newer schemas) cannot change what `make test` expects.
# Needs python3 with venv (scripts/ensure-deps.sh installs it).
# Usage: bin="$(scripts/ensure-kubernetes-validate.sh)"; "$bin" --strict deploy/manifests/mcp-hub.yaml
set -euo pipefail

version=1.37.0
venv="${MCP_HUB_CACHE:-$HOME/.cache/mcp-hub}/venv-kubernetes-validate"
mkdir -p "$(dirname "$venv")"
# One install at a time (two test binaries, or a test and the script, may ask at once).
exec 9>"$venv.lock"
flock 9

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$version"; then
  echo "ensure-kubernetes-validate: installing kubernetes-validate $version into $venv" >&2
  python3 -m venv "$venv" >&2 || { echo "ensure-kubernetes-validate: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
  "$venv/bin/kubernetes-validate" --version >/dev/null || { echo "ensure-kubernetes-validate: $venv/bin/kubernetes-validate does not run" >&2; exit 1; }
fi
echo "$venv/bin/kubernetes-validate"
