"""Official MCP Python SDK 2.x in its default mode (Client(url) tries the stateless
server/discover first, then initialize): list tools, call one, print a JSON summary
with the protocol version negotiated and which lifecycle was used (discovered: the
stateless server/discover path; initialized: the initialize handshake).

usage: client_v2.py URL TOOL ARGS_JSON
"""
import asyncio
import json
import sys

from mcp import Client


async def main(url: str, tool: str, args: dict) -> None:
    async with Client(url) as client:
        tools = await client.list_tools()
        result = await client.call_tool(tool, args)
        print(json.dumps({
            "sdk": "2.x",
            "protocol": client.protocol_version,
            "discovered": client.session.discover_result is not None,
            "initialized": client.session.initialize_result is not None,
            "tools": sorted(t.name for t in tools.tools),
            "schemas": {t.name: t.input_schema for t in tools.tools},
            "isError": bool(result.is_error),
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
            "structured": result.structured_content,
        }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
