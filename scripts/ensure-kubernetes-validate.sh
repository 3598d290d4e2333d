#!/usr/bin/env bash
# Prints the path of kubernetes-validate (manifests against the Kubernetes API's JSON
# schemas, --strict; supervisor/tests/deploy.rs runs it on the plain manifests and on the
# worker Deployments), pinned, installed into a venv on first use by
# scripts/ensure-pip-tool.sh.
# Usage: bin="$(scripts/ensure-kubernetes-validate.sh)"; "$bin" --strict deploy/manifests/mcp-hub.yaml
set -euo pipefail
exec "$(dirname "$0")/ensure-pip-tool.sh" kubernetes-validate 1.37.0
