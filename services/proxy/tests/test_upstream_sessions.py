"""The upstream pool keeps one session per credential group (connector, user, and the end
user a jwt_passthrough token vouches for), bounded per connector; a session replaced or
evicted is closed only once its in-flight calls have answered (issue 16, item 10e). Against
a real MCP server (the `mcp` package) over streamable HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp.server.mcpserver import Context, MCPServer
from support.upstream import serve_asgi
from warden_common.contracts import Credential
from warden_proxy.upstream import UpstreamPool


@asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    srv = MCPServer("sessions-test")

    @srv.tool()
    async def whoami(ctx: Context) -> str:
        """Answer, a little later, with the credential the request carried."""
        await asyncio.sleep(0.3)
        return str((ctx.headers or {}).get("authorization", ""))

    async with serve_asgi(srv.streamable_http_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


def _cred(url: str, user: str, version: int = 1) -> Credential:
    return Credential(
        connector="site",
        url=url,
        transport="streamable_http",
        timeout_s=20,
        headers={"Authorization": f"Bearer {user}-v{version}"},
        subject=user,
    )


async def _whoami(pool: UpstreamPool, cred: Credential) -> str:
    r = await pool.call_tool(cred, None, "whoami", {})
    assert not r.is_error, r
    return str(r.content[0].text)  # type: ignore[union-attr]


@pytest.mark.parametrize("bound", [100, 4])
async def test_twenty_end_users_with_their_own_tokens_all_get_answers_on_their_own_credential(bound: int) -> None:
    async with upstream() as url:
        pool = UpstreamPool(allow_insecure=True, max_sessions=bound)
        try:
            creds = [_cred(url, f"user{i}") for i in range(20)]
            answers = await asyncio.gather(*(_whoami(pool, c) for c in creds))
            assert answers == [f"Bearer user{i}-v1" for i in range(20)]
            assert pool.sessions("site") <= bound  # the bound holds once the calls have answered
        finally:
            await pool.close()


async def test_a_new_credential_for_the_same_user_lets_the_old_calls_finish() -> None:
    async with upstream() as url:
        pool = UpstreamPool(allow_insecure=True)
        try:
            first = asyncio.ensure_future(_whoami(pool, _cred(url, "alice", 1)))
            await asyncio.sleep(0.1)  # in flight on the first session
            second = await _whoami(pool, _cred(url, "alice", 2))  # replaces it
            assert await first == "Bearer alice-v1" and second == "Bearer alice-v2"
            assert pool.sessions("site") == 1  # the replaced session closed after its call
        finally:
            await pool.close()


async def test_an_idle_session_is_closed() -> None:
    async with upstream() as url:
        pool = UpstreamPool(allow_insecure=True, idle_s=0.01)
        try:
            await _whoami(pool, _cred(url, "alice"))
            await asyncio.sleep(0.05)
            await _whoami(pool, _cred(url, "bob"))  # opening another sweeps the idle one
            assert pool.sessions("site") == 1
        finally:
            await pool.close()
