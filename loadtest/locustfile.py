"""Locust load test of MCP Hub, for SREs who use locust: the same scenario files as
`mcp-loadtest` (loadtest/scenarios/*.yaml), SSE-aware: a call succeeds only when its
`tool_call.completed` event arrived, and its response time runs to that event.

    pip install locust pyyaml
    MCP_SCENARIO=loadtest/scenarios/demo.yaml \
      locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \
      --headless -u 50 -r 50 -t 60s

Locust users are a closed loop (each waits for its answer before the next call), so a
slow hub lowers the offered load; `MCP_RPS_PER_USER` paces each user with
`constant_throughput`, and `mcp-loadtest` remains the open-loop reference for the
figures in docs/BENCHMARKS.md. Only the hub call protocol (`mode: call`) is driven here.
"""

import json
import os
import random
import time

import yaml
from locust import HttpUser, constant_throughput, task


def load_scenario(path):
    with open(path, encoding="utf-8") as f:
        scenario = yaml.safe_load(f)
    servers = scenario["servers"]
    if isinstance(servers, dict):
        count = servers["count"]
        width = servers.get("width") or len(str(max(count - 1, 0)))
        servers = [f"{servers['prefix']}{i:0{width}d}" for i in range(count)]
    requests = []
    for spec in scenario["requests"]:
        args = spec.get("args", {})
        choices = args if isinstance(args, list) else [args]
        body_choices = [json.dumps({"args": a}) for a in choices]
        requests.append((spec["tool"], int(spec.get("weight", 1)), body_choices))
    if scenario.get("mode", "call") != "call":
        raise SystemExit("locustfile: only mode: call scenarios are supported")
    return servers, requests


SCENARIO = os.environ.get("MCP_SCENARIO", "loadtest/scenarios/demo.yaml")
SERVERS, REQUESTS = load_scenario(SCENARIO)
TOOLS = [tool for tool, _, _ in REQUESTS]
WEIGHTS = [weight for _, weight, _ in REQUESTS]
BODIES = {tool: bodies for tool, _, bodies in REQUESTS}


class McpHubUser(HttpUser):
    wait_time = constant_throughput(float(os.environ.get("MCP_RPS_PER_USER", "1")))

    def on_start(self):
        self.server_index = random.randrange(len(SERVERS))

    @task
    def call_tool(self):
        server = SERVERS[self.server_index]
        self.server_index = (self.server_index + 1) % len(SERVERS)
        tool = random.choices(TOOLS, weights=WEIGHTS)[0]
        body = random.choice(BODIES[tool])
        started = time.perf_counter()
        with self.client.post(
            f"/mcp/{server}/{tool}",
            data=body,
            headers={"content-type": "application/json", "accept": "text/event-stream"},
            name=f"/mcp/[server]/{tool}",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"http_{response.status_code}")
                return
            outcome = None
            length = 0
            for line in response.iter_lines():
                length += len(line)
                if outcome is None and line.startswith(b"event: tool_call.completed"):
                    outcome = "completed"
                    completed_at = time.perf_counter()
                elif outcome is None and line.startswith(b"event: tool_call.error"):
                    outcome = "tool_error"
            # Locust timed the headers; the call lasts until its completion event.
            end = completed_at if outcome == "completed" else time.perf_counter()
            response.request_meta["response_time"] = (end - started) * 1000.0
            response.request_meta["response_length"] = length
            if outcome == "completed":
                response.success()
            else:
                response.failure(outcome or "protocol: the stream ended without tool_call.completed")
