#!/usr/bin/env python3
"""End-to-end check of Second Brain's MCP server with the official MCP
Python SDK, a client this project did not write (ADR 19).

    SB_MCP_CHECK_TOKEN_A=… SB_MCP_CHECK_TOKEN_B=… deploy/mcp_check.py http://127.0.0.1:8083/mcp

The tokens are two different users' bearer tokens (API keys or JWTs), from
the environment: on a command line, `ps` would show them to anyone. It
checks, over streamable HTTP:

1. the twelve tools are listed, each with an object schema;
2. `remember` as A answers an id and version 1;
3. `recall` as A finds that note at once (read your writes: no polling);
4. `recall` as B does not find it (every call is scoped to its token);
5. a bad argument (an id that is not a UUID) is a tool error with the
   code `bad_argument`, not a protocol error, and the connection goes on.

Needs the `mcp` package pinned in deploy/mcp-check-requirements.txt:

    python3 -m venv /tmp/mcp-check-venv
    /tmp/mcp-check-venv/bin/pip install --require-hashes --no-deps \\
        -r deploy/mcp-check-requirements.txt
    SB_MCP_CHECK_TOKEN_A=… SB_MCP_CHECK_TOKEN_B=… /tmp/mcp-check-venv/bin/python deploy/mcp_check.py URL

Prints one line per check and, last, "N passed, N failed"; exits 1 if any
check failed.
"""

import argparse
import asyncio
import json
import os
import sys
import uuid
from contextlib import asynccontextmanager

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "remember", "recall", "get_memory", "list_memories", "update_memory", "tag_memory",
    "forget_memory", "restore_memory", "memory_history", "start_session", "end_session",
    "list_sessions",
}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: object = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what}" + (f": {detail}" if detail != "" else ""))
        return ok


@asynccontextmanager
async def session(url: str, token: str):
    """An initialised MCP session sending `Authorization: Bearer <token>`."""
    # The SDK's own advice for headers: an HTTP client of ours, passed in.
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                              timeout=httpx2.Timeout(30.0, read=60.0))
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as mcp:
            await mcp.initialize()
            yield mcp


def body(result) -> dict:
    """A tool result's JSON: its structured content, else its first text."""
    if isinstance(result.structured_content, dict):
        return result.structured_content
    for block in result.content:
        text = getattr(block, "text", None)
        if text is not None:
            try:
                return json.loads(text)
            except ValueError:
                return {"text": text}
    return {}


def hit_ids(result) -> list[str]:
    return [hit.get("id") for hit in body(result).get("hits", [])]


async def run(url: str, token_a: str, token_b: str, checks: Checks) -> None:
    word = f"mcpcheck{uuid.uuid4().hex}"
    async with session(url, token_a) as alice:
        listed = await alice.list_tools()
        names = {tool.name for tool in listed.tools}
        checks.check(names == TOOLS, "the twelve tools are listed", sorted(names ^ TOOLS))
        schemaless = [t.name for t in listed.tools if (t.input_schema or {}).get("type") != "object"]
        checks.check(not schemaless, "each tool has an object schema", schemaless)

        written = await alice.call_tool(
            "remember", {"content": f"The {word} is kept in the blue box", "tags": ["mcp-check"]})
        note = body(written)
        if not checks.check(not written.is_error and note.get("version") == 1,
                            "remember answers an id and version 1", note):
            return

        found = await alice.call_tool("recall", {"query": word, "mode": "keyword"})
        checks.check(not found.is_error and hit_ids(found) == [note["id"]],
                     "recall as the writer finds the note at once", body(found))

        bad = await alice.call_tool("get_memory", {"id": "not-a-uuid"})
        checks.check(bad.is_error and body(bad).get("code") == "bad_argument",
                     "a bad argument is a tool error bad_argument", body(bad))
        after = await alice.call_tool("get_memory", {"id": note["id"]})
        checks.check(not after.is_error and body(after).get("id") == note["id"],
                     "the connection goes on after the tool error", body(after))

    async with session(url, token_b) as bob:
        theirs = await bob.call_tool("recall", {"query": word, "mode": "keyword"})
        checks.check(not theirs.is_error and note["id"] not in hit_ids(theirs),
                     "recall as another user does not find it", body(theirs))
        read = await bob.call_tool("get_memory", {"id": note["id"]})
        checks.check(read.is_error and body(read).get("code") == "not_found",
                     "get_memory as another user is a tool error not_found", body(read))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the MCP endpoint, e.g. http://127.0.0.1:8083/mcp")
    args = parser.parse_args()
    token_a = os.environ.get("SB_MCP_CHECK_TOKEN_A", "")
    token_b = os.environ.get("SB_MCP_CHECK_TOKEN_B", "")
    if not token_a or not token_b:
        parser.error("SB_MCP_CHECK_TOKEN_A and SB_MCP_CHECK_TOKEN_B name two users' bearer tokens")
    if token_a == token_b:
        parser.error("the two tokens must be two users'")
    checks = Checks()
    print(f"MCP end-to-end check against {args.url}")
    try:
        asyncio.run(run(args.url, token_a, token_b, checks))
    except Exception as error:  # noqa: BLE001  (any failure to talk is one failed check)
        checks.check(False, "the MCP session ran to the end", repr(error))
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
