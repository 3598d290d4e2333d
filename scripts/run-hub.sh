#!/usr/bin/env bash
# `make run`: starts the whole hub in the foreground and stops all of it on Ctrl-C.
# Redis: the one at REDIS_URL when it answers, otherwise a local redis-server whose data
# lives in .data/redis (append-only file), so the registry survives a restart.
# The dashboard is built first when missing or stale (scripts/build-dashboard.sh).
# Then the mock of the demo REST APIs, the admin API seeded with the demo servers
# pointed at that mock, the supervisor (which spawns one worker per server) and the
# gateway in front. Every process logs JSON lines to this terminal. A part that exits
# is started again with back-off (1 s, doubling to 30 s; back to 1 s once it stayed
# up a minute) and a `run:` line saying so, as a process manager would; Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .env ]; then set -a; . ./.env; set +a; fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export MCP_MOCK_API_LISTEN="${MCP_MOCK_API_LISTEN:-127.0.0.1:8090}"
export MCP_DEMO_API_URL="${MCP_DEMO_API_URL:-http://$MCP_MOCK_API_LISTEN}"
export MCP_ADMIN_SEED="${MCP_ADMIN_SEED:-conf/demo-registry.json}"
profile="${MCP_RUN_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"
export CARGO_TARGET_DIR="$target"

scripts/ensure-deps.sh
# The dashboard (frontend/dist) when it is missing or older than its sources. A failed
# build does not stop the hub: /dashboard then answers a page that says how to build it.
scripts/build-dashboard.sh || echo "run: the dashboard could not be built (see above); the hub starts without it" >&2
export MCP_ADMIN_GATEWAY_METRICS_URL="${MCP_ADMIN_GATEWAY_METRICS_URL:-http://${MCP_GATEWAY_METRICS_LISTEN:-127.0.0.1:9091}/metrics}"
echo "run: building ($profile)..." >&2
cargo build --workspace --bins --profile "$profile" --quiet
bin="$target/$profile"

pids=()     # the supervise loops
piddir=$(mktemp -d)  # the current pid of each part, written by its loop
stop_all() {
  trap - INT TERM EXIT
  touch "$piddir/stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  parts=()
  for f in "$piddir"/*.pid; do [ -f "$f" ] && parts+=("$(cat "$f")"); done
  for pid in "${parts[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "${parts[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${parts[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$piddir"
}
# supervise NAME COMMAND...: runs it in the background and starts it again whenever it
# exits (unless the hub is stopping), with back-off.
supervise() {
  local name=$1; shift
  (
    set +e
    delay=1
    while :; do
      started=$SECONDS
      "$@" &
      child=$!
      echo "$child" > "$piddir/$name.pid"
      wait "$child"
      status=$?
      [ -e "$piddir/stopping" ] && exit 0
      (( SECONDS - started >= 60 )) && delay=1
      echo "run: $name exited (status $status); restarting it in ${delay}s" >&2
      sleep "$delay"
      [ -e "$piddir/stopping" ] && exit 0
      delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
    done
  ) &
  pids+=($!)
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

# host, port and password of REDIS_URL (redis://[user:pass@]host:port[/db])
rest="${REDIS_URL#*://}"; userinfo=""
[[ "$rest" == *@* ]] && userinfo="${rest%%@*}"
hostport="${rest##*@}"; hostport="${hostport%%/*}"
redis_host="${hostport%%:*}"; redis_port="${hostport##*:}"
[ "$redis_port" = "$hostport" ] && redis_port=6379
redis_password=""
[[ "$userinfo" == *:* ]] && redis_password="${userinfo#*:}"

redis_answers() { # a PING within 2 s (a host that drops packets must not hang the start)
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$0/$1" 2>/dev/null || exit 1
    printf "PING\r\n" >&3
    read -r -t 2 line <&3 || true
    [[ "$line" == +PONG* || "$line" == -NOAUTH* ]]' "$redis_host" "$redis_port" 2>/dev/null
}

if redis_answers; then
  echo "run: using the Redis at $redis_host:$redis_port" >&2
else
  case "$redis_host" in
    127.*|localhost|::1|\[::1\]) ;;
    *) echo "run: no Redis answers at $redis_host:$redis_port (REDIS_URL); start it, or unset REDIS_URL for a local one" >&2; exit 1 ;;
  esac
  echo "run: no Redis at $redis_host:$redis_port; starting redis-server with its data in .data/redis" >&2
  mkdir -p .data/redis
  auth=()
  [ -n "$redis_password" ] && auth=(--requirepass "$redis_password")
  supervise redis-server redis-server --bind "$redis_host" --port "$redis_port" --dir "$PWD/.data/redis" \
    --appendonly yes --save "" --loglevel warning "${auth[@]}"
  for _ in $(seq 100); do redis_answers && break; sleep 0.1; done
  redis_answers || { echo "run: redis-server did not come up" >&2; exit 1; }
fi

supervise mcp-mock-api "$bin/mcp-mock-api" --listen "$MCP_MOCK_API_LISTEN"
supervise mcp-admin "$bin/mcp-admin" serve
# Workers outlive a supervisor crash by design (a restarted supervisor adopts them);
# when `make run` stops, they stop with it.
export MCP_SUPERVISOR_STOP_WORKERS_ON_EXIT="${MCP_SUPERVISOR_STOP_WORKERS_ON_EXIT:-true}"
export MCP_SUPERVISOR_WORKER_BIN="${MCP_SUPERVISOR_WORKER_BIN:-$bin/mcp-worker}"
supervise mcp-supervisor "$bin/mcp-supervisor"
export MCP_GATEWAY_PINGORA_CONF="${MCP_GATEWAY_PINGORA_CONF:-conf/gateway.yaml}"
supervise mcp-gateway "$bin/mcp-gateway"

cat >&2 <<EOM
run: hub is up (Ctrl-C stops everything)
  dashboard    http://${MCP_GATEWAY_LISTEN:-127.0.0.1:8080}/dashboard
  gateway      http://${MCP_GATEWAY_LISTEN:-127.0.0.1:8080}   e.g. curl -N -X POST localhost:8080/mcp/fruits_api/get_fruits -d '{"args":{}}'
  MCP          http://${MCP_GATEWAY_LISTEN:-127.0.0.1:8080}/mcp-servers/fruits_api/mcp
  admin API    http://${MCP_ADMIN_LISTEN:-127.0.0.1:8081}/api/servers
  metrics      http://${MCP_GATEWAY_METRICS_LISTEN:-127.0.0.1:9091}/metrics
  mock REST    http://$MCP_MOCK_API_LISTEN
EOM
# Parts that exit are started again by their loops; this waits until Ctrl-C.
set +e
wait "${pids[@]}"
