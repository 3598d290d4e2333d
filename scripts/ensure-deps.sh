#!/usr/bin/env bash
# Installs what `make run` and `make test` need and the machine lacks: cmake (Pingora
# builds zlib-ng with it), redis-server, a C compiler, and the Rust toolchain's
# rustfmt/clippy components. Debian/Ubuntu through apt-get; prints what it does.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv python3-pip)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  # Debian and Ubuntu ship venv's pip bootstrap separately from python3 itself.
  missing+=(python3-venv)
fi

if ((${#missing[@]})); then
  echo "ensure-deps: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "ensure-deps: no apt-get; install ${missing[*]} by hand" >&2; exit 1; }
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "ensure-deps: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >&2 || true
  done
fi

# The official Python MCP SDKs the interop tests drive (only with --with-sdks, as
# `make test` passes): 2.x (current API, tries the stateless server/discover first)
# and 1.x (streamablehttp_client, sse_client).
[ "${1:-}" = "--with-sdks" ] || exit 0
cache="${MCP_HUB_CACHE:-$HOME/.cache/mcp-hub}"
ensure_venv() { # name, requirement
  local venv="$cache/$1"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mcp' >/dev/null 2>&1; then
    return 0
  fi
  echo "ensure-deps: creating $venv ($2)" >&2
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2 || { echo "ensure-deps: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$2" >&2
}
ensure_venv venv-mcp2 "mcp>=2,<3"
ensure_venv venv-mcp1 "mcp>=1.20,<2"

# Real public OpenAPI documents the OpenAPI import tests read (npm packages, MIT; not
# committed): the Swagger Petstore 3.0/3.1 of @readme/oas-examples and GitHub's own
# api.github.com document of @octokit/openapi.
ensure_npm_fixture() { # package@version, directory under the cache
  local dir="$cache/openapi-fixtures/$2"
  [ -f "$dir/.complete" ] && return 0
  echo "ensure-deps: fetching $1 (OpenAPI test documents)" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1" >/dev/null) || { echo "ensure-deps: npm pack $1 failed" >&2; exit 1; }
  tar xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
  rm -rf "$tmp"
  touch "$dir/.complete"
}
ensure_npm_fixture @readme/oas-examples@8.2.2 oas-examples
ensure_npm_fixture @octokit/openapi@23.0.2 octokit-openapi
