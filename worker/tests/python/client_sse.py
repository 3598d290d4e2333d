"""Official MCP Python SDK 1.x over the old HTTP+SSE transport (sse_client): initialize,
list tools, call one, print a JSON summary.

usage: client_sse.py SSE_URL TOOL ARGS_JSON
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client


async def main(url: str, tool: str, args: dict) -> None:
    async with sse_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, args)
            print(json.dumps({
                "sdk": "1.x-sse",
                "protocol": info.protocolVersion,
                "tools": sorted(t.name for t in tools.tools),
                "isError": bool(result.isError),
                "text": [c.text for c in result.content if c.type == "text"],
                "structured": result.structuredContent,
            }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
