#!/usr/bin/env bash
# Prints the path of kubernetes-validate (the rendered manifests against the Kubernetes
# API's JSON schemas, --strict; no test runs it yet, see issue #26), pinned, installed
# into a venv on first use by scripts/ensure-pip-tool.sh.
# Usage: bin="$(scripts/ensure-kubernetes-validate.sh)"; "$bin" --strict deploy/manifests/mcp-hub.yaml
set -euo pipefail
exec "$(dirname "$0")/ensure-pip-tool.sh" kubernetes-validate 1.37.0
