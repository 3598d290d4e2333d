"""Official MCP Python SDK 1.x over Streamable HTTP (streamablehttp_client +
ClientSession): initialize, list tools, call one, optionally wait for
notifications/tools/list_changed after the caller adds a tool, print a JSON summary.
A call answered with a JSON-RPC error is in the summary as "error".

usage: client_v1.py URL TOOL ARGS_JSON [--wait-list-changed SECONDS]
"""
import asyncio
import json
import sys

import mcp.types as types
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.client.streamable_http import streamablehttp_client


async def main(url: str, tool: str, args: dict, wait_changed: float) -> None:
    changed = asyncio.Event()

    async def on_message(message) -> None:
        root = getattr(message, "root", None)
        if isinstance(root, types.ToolListChangedNotification):
            changed.set()

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write, message_handler=on_message) as session:
            info = await session.initialize()
            tools = await session.list_tools()
            summary = {
                "sdk": "1.x",
                "protocol": info.protocolVersion,
                "server": info.serverInfo.name,
                "tools": sorted(t.name for t in tools.tools),
            }
            try:
                result = await session.call_tool(tool, args)
                summary["isError"] = bool(result.isError)
                summary["text"] = [c.text for c in result.content if c.type == "text"]
                summary["structured"] = result.structuredContent
            except McpError as err:
                summary["error"] = err.error.model_dump(mode="json")
            if wait_changed > 0:
                print(json.dumps({"ready": True}), flush=True)
                try:
                    await asyncio.wait_for(changed.wait(), wait_changed)
                    summary["listChanged"] = True
                    summary["toolsAfter"] = sorted(t.name for t in (await session.list_tools()).tools)
                except asyncio.TimeoutError:
                    summary["listChanged"] = False
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    wait = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--wait-list-changed" else 0.0
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), wait))
