#!/usr/bin/env bash
# Instructions per call of one worker, counted by callgrind (exact, whatever the host
# does): N calls of the demo `get_fruit_by_id` after W of warm-up, sent straight to the
# worker (no gateway, no supervisor) beside a redis-server, the mock REST API and the
# admin API seeding conf/demo-registry.json. Needs valgrind (apt-get install valgrind).
# Usage: loadtest/tools/callgrind-worker.sh BIN_DIR OUT [N] [W]; env passes to the
# worker (MCP_AUDIT_ENABLED=false for the audit-off figure). Then:
#   callgrind_annotate OUT.1 | grep "PROGRAM TOTALS"   (divide by N)
set -euo pipefail
bin=$1; out=$2; n=${3:-500}; w=${4:-100}
repo="$(cd "$(dirname "$0")/../.." && pwd)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rp=$(port); mp=$(port); ap=$(port); wp=$(port)
tmp=$(mktemp -d)
redis-server --port $rp --save '' --appendonly no --dir $tmp >/dev/null &
pids=($!)
trap 'kill ${pids[@]} 2>/dev/null; sleep 0.5; kill -9 ${pids[@]} 2>/dev/null; rm -rf $tmp' EXIT
sleep 0.3
MCP_ENV_FILE=/nonexistent $bin/mcp-mock-api --listen 127.0.0.1:$mp >$tmp/mock.log 2>&1 & pids+=($!)
MCP_ENV_FILE=/nonexistent $bin/mcp-admin --listen 127.0.0.1:$ap --redis-url redis://127.0.0.1:$rp --key-prefix cg: --seed $repo/conf/demo-registry.json --seed-origin http://127.0.0.1:$mp >$tmp/admin.log 2>&1 & pids+=($!)
for i in $(seq 100); do curl -sf http://127.0.0.1:$ap/healthz >/dev/null && break; sleep 0.1; done
MCP_ENV_FILE=/nonexistent MCP_LOG_SAMPLE=${MCP_LOG_SAMPLE:-1} valgrind --tool=callgrind --callgrind-out-file=$out --dump-instr=no \
  $bin/mcp-worker --server fruits_api --listen 127.0.0.1:$wp --replica 0 --supervisor-id cg --redis-url redis://127.0.0.1:$rp --key-prefix cg: --orphan-timeout-secs 100000 --advertise-host 127.0.0.1 >$tmp/worker.log 2>&1 & pids+=($!)
for i in $(seq 300); do curl -sf http://127.0.0.1:$wp/healthz >/dev/null && break; sleep 0.1; done
python3 - $wp $w <<'PY'
import http.client, sys, json
c=http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("POST","/call/get_fruit_by_id",body=json.dumps({"args":{"id":1+i%5}}),headers={"content-type":"application/json","x-request-id":f"w{i}"})
    r=c.getresponse(); b=r.read()
    assert r.status==200, (r.status,b)
print("warm", b[:200])
PY
callgrind_control -z $(pgrep -f "callgrind.*--listen 127.0.0.1:$wp" | head -1) >/dev/null
python3 - $wp $n <<'PY'
import http.client, sys, json, time
c=http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("POST","/call/get_fruit_by_id",body=json.dumps({"args":{"id":1+i%5}}),headers={"content-type":"application/json","x-request-id":f"m{i}"})
    r=c.getresponse(); b=r.read()
    assert r.status==200, (r.status,b)
    time.sleep(0.002)
PY
callgrind_control -d $(pgrep -f "callgrind.*--listen 127.0.0.1:$wp" | head -1) >/dev/null
sleep 1
ls -la $out* | head
