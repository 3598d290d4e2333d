"""Official MCP Python SDK 2.x in its default mode (Client(url) tries the stateless
server/discover first, then initialize): list tools, call one, print a JSON summary
with the protocol version negotiated and which lifecycle was used (discovered: the
stateless server/discover path; initialized: the initialize handshake).

usage: client_v2.py URL TOOL ARGS_JSON [--wait-list-changed SECONDS]

With --wait-list-changed the client then waits for notifications/tools/list_changed
(after the caller adds a tool) and lists the tools again. On the stateless 2026-07-28
protocol it hears it on a subscriptions/listen stream (Client.listen); on a handshake
session (had server/discover failed) through its message handler. "listenedVia" says
which, and it prints {"ready": true} once it is listening.
"""
import asyncio
import json
import sys

from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged


def is_list_changed(message) -> bool:
    message = getattr(message, "root", message)
    return getattr(message, "method", None) == "notifications/tools/list_changed"


def ready() -> None:
    print(json.dumps({"ready": True}), flush=True)


async def wait_list_changed(client: Client, changed: asyncio.Event, seconds: float) -> dict:
    """Waits for one tool-list change; the summary's listen fields."""
    if client.protocol_version == "2026-07-28":
        async with client.listen(tools_list_changed=True) as subscription:
            fields = {
                "listenedVia": "subscriptions/listen",
                "honored": subscription.honored.model_dump(by_alias=True, exclude_none=True),
            }
            ready()
            try:
                event = await asyncio.wait_for(anext(subscription), seconds)
                fields["listChanged"] = isinstance(event, ToolsListChanged)
            except asyncio.TimeoutError:
                fields["listChanged"] = False
            if fields["listChanged"]:
                fields["toolsAfter"] = sorted(t.name for t in (await client.list_tools()).tools)
            return fields
    fields = {"listenedVia": "session"}
    ready()
    try:
        await asyncio.wait_for(changed.wait(), seconds)
        fields["listChanged"] = True
        fields["toolsAfter"] = sorted(t.name for t in (await client.list_tools()).tools)
    except asyncio.TimeoutError:
        fields["listChanged"] = False
    return fields


async def main(url: str, tool: str, args: dict, wait_changed: float) -> None:
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if is_list_changed(message):
            changed.set()

    options = {"message_handler": on_message} if wait_changed > 0 else {}
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
            summary.update(await wait_list_changed(client, changed, wait_changed))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    wait = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--wait-list-changed" else 0.0
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), wait))
