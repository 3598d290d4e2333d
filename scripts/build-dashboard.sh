#!/usr/bin/env bash
# Builds the dashboard (frontend/ -> frontend/dist, served by mcp-admin at /dashboard)
# when the build is missing or older than any of its sources; `--force` always builds.
# Installs the locked npm dependencies (npm ci) when they are missing or stale, with a
# Node from scripts/ensure-node.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0
[ "${1:-}" = "--force" ] && force=1
dist=frontend/dist/index.html
if [ "$force" = 0 ] && [ -f "$dist" ]; then
  newer=$(find frontend -path frontend/node_modules -prune -o -path frontend/dist -prune \
    -o -path frontend/test-output -prune -o -path frontend/e2e -prune \
    -o -type f -newer "$dist" -print -quit)
  if [ -z "$newer" ]; then
    exit 0
  fi
  echo "dashboard: $newer changed since the last build" >&2
fi

PATH="$(scripts/ensure-node.sh):$PATH"
export PATH
cd frontend
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "dashboard: installing the locked npm dependencies (npm ci)" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
fi
echo "dashboard: building frontend/dist (node $(node --version))" >&2
npx vite build --logLevel warn
touch dist/index.html
