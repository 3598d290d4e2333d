#!/usr/bin/env bash
# Fuzzes the admin API against its own OpenAPI document with schemathesis (pinned, from
# PyPI by scripts/ensure-schemathesis.sh): a redis-server and an `mcp-admin` (the
# debug build, with MCP_ADMIN_TOKEN set and the demo registry seeded) on free ports,
# every default check and phase (examples, coverage, fuzzing, stateful), the seed and the
# case count printed; the settings of scripts/schemathesis.toml (as the test in `make
# test`, admin-api/tests/it/schemathesis.rs, which runs seed 24 with 10 examples). Exits with schemathesis's status (0: no failure, no server error).
# Usage: scripts/schemathesis-admin.sh [--seed N] [--max-examples N] [schemathesis flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"

schemathesis=$(scripts/ensure-schemathesis.sh)
cargo build --quiet -p mcp-admin --bin mcp-admin

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
admin_port=$(free_port)
token="schemathesis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
MCP_ENV_FILE=/nonexistent MCP_ADMIN_TOKEN="$token" "$CARGO_TARGET_DIR/debug/mcp-admin" \
  --redis-url "redis://127.0.0.1:$redis_port" --key-prefix schemathesis \
  --listen "127.0.0.1:$admin_port" --seed conf/demo-registry.json >"$work/admin.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && break; sleep 0.1; done

seed_args=()
case " $* " in *" --seed "*) ;; *) seed_args=(--seed "${SCHEMATHESIS_SEED:-$RANDOM}") ;; esac
# From the scratch folder: schemathesis keeps its cache (.schemathesis/) where it runs.
config="$PWD/scripts/schemathesis.toml"
(cd "$work" && "$schemathesis" --config-file "$config" run "http://127.0.0.1:$admin_port/api/openapi.json" \
  -H "Authorization: Bearer $token" --checks all "${seed_args[@]}" "$@")
