"""Official MCP Python SDK 2.x in its default mode (Client(url) tries the stateless
server/discover first, then initialize): list tools, call one, print a JSON summary
with the protocol version negotiated and which lifecycle was used (discovered: the
stateless server/discover path; initialized: the initialize handshake).

usage: client_v2.py URL TOOL ARGS_JSON [--wait-list-changed SECONDS]

With --wait-list-changed the client then waits for notifications/tools/list_changed
(after the caller adds a tool) and lists the tools again. It uses the initialize
handshake (mode="legacy") for that: the hub's workers send list_changed on the session's
stream and do not implement the 2026-07-28 subscriptions/listen, so a stateless 2.x
client never hears it.
"""
import asyncio
import json
import sys

from mcp import Client


def is_list_changed(message) -> bool:
    message = getattr(message, "root", message)
    return getattr(message, "method", None) == "notifications/tools/list_changed"


async def main(url: str, tool: str, args: dict, wait_changed: float) -> None:
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if is_list_changed(message):
            changed.set()

    options = {"mode": "legacy", "message_handler": on_message} if wait_changed > 0 else {}
    async with Client(url, **options) as client:
        tools = await client.list_tools()
        result = await client.call_tool(tool, args)
        summary = {
            "sdk": "2.x",
            "protocol": client.protocol_version,
            "discovered": client.session.discover_result is not None,
            "initialized": client.session.initialize_result is not None,
            "tools": sorted(t.name for t in tools.tools),
            "schemas": {t.name: t.input_schema for t in tools.tools},
            "isError": bool(result.is_error),
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
            "structured": result.structured_content,
        }
        if wait_changed > 0:
            print(json.dumps({"ready": True}), flush=True)
            try:
                await asyncio.wait_for(changed.wait(), wait_changed)
                summary["listChanged"] = True
                summary["toolsAfter"] = sorted(t.name for t in (await client.list_tools()).tools)
            except asyncio.TimeoutError:
                summary["listChanged"] = False
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    wait = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--wait-list-changed" else 0.0
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), wait))
