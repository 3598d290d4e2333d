#!/usr/bin/env bash
# Prints the path of the schemathesis binary the admin API's fuzz test runs
# (admin-api/tests/it/schemathesis.rs, scripts/schemathesis-admin.sh), pinned, installed
# into a venv on first use by scripts/ensure-pip-tool.sh.
# Usage: bin="$(scripts/ensure-schemathesis.sh)"; "$bin" run ...
set -euo pipefail
exec "$(dirname "$0")/ensure-pip-tool.sh" schemathesis 4.32.5
