"""Every upstream connection, of every transport, goes through the one egress seam
(warden_proxy.egress): resolved once per connection, every address checked, connected to a
checked address, never through an environment proxy. Against real MCP servers (the `mcp`
package) over streamable HTTP and legacy SSE."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from support.upstream import serve_asgi
from warden_common.contracts import Credential
from warden_common.netguard import IPAddress, NetPolicy
from warden_proxy.egress import Egress
from warden_proxy.errors import UpstreamError
from warden_proxy.upstream import UpstreamPool

PUBLIC = ipaddress.ip_address("93.184.216.34")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class Counting:
    """An ASGI app that counts the HTTP requests it is given."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def _server() -> MCPServer:
    srv = MCPServer("egress-test")

    @srv.tool()
    def echo(text: str) -> str:
        return text

    return srv


@asynccontextmanager
async def upstream(transport: str) -> AsyncIterator[tuple[int, str, Counting]]:
    srv = _server()
    app = Counting(srv.sse_app() if transport == "sse" else srv.streamable_http_app())
    async with serve_asgi(app) as port:
        yield port, "/sse" if transport == "sse" else "/mcp", app


def _cred(url: str, transport: str) -> Credential:
    return Credential(connector="notes", url=url, transport=transport, timeout_s=10)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["sse", "streamable_http"])
async def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_dialled(transport: str) -> None:
    answers: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        # a public address for the first look-up (the pre-connect check), loopback after
        answer = PUBLIC if not answers else LOOPBACK
        answers.append(str(answer))
        return [answer]

    egress = Egress(NetPolicy(), allow_http=True, resolver=rebinding)  # production policy, http allowed
    async with upstream(transport) as (port, path, app):
        pool = UpstreamPool(allow_insecure=False, egress=egress)
        try:
            with pytest.raises(UpstreamError, match="loopback"):
                await pool.list_tools_page(_cred(f"http://localhost:{port}{path}", transport), None, None)
        finally:
            await pool.close()
        assert answers[:2] == [str(PUBLIC), str(LOOPBACK)]  # checked, then re-resolved at connect
        assert app.requests == 0  # the loopback server was never reached


@pytest.mark.parametrize("transport", ["sse", "streamable_http"])
async def test_environment_proxies_are_ignored_on_every_transport(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections = 0

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        async with upstream(transport) as (port, path, app):
            pool = UpstreamPool(allow_insecure=True)  # the dev setting: loopback upstreams allowed
            try:
                tools, _ = await pool.list_tools_page(_cred(f"http://127.0.0.1:{port}{path}", transport), None, None)
                result = await pool.call_tool(
                    _cred(f"http://127.0.0.1:{port}{path}", transport), None, "echo", {"text": "hi"}
                )
            finally:
                await pool.close()
            assert [t.name for t in tools] == ["echo"]
            assert not result.is_error
            assert app.requests > 0
    finally:
        server.close()
        await server.wait_closed()
    assert connections == 0


@pytest.mark.parametrize("header", ["Host", "content-length", "Transfer-Encoding", "Proxy-Authorization"])
async def test_a_credential_with_a_reserved_header_is_refused_not_forwarded(header: str) -> None:
    async with upstream("streamable_http") as (port, path, app):
        pool = UpstreamPool(allow_insecure=True)
        cred = Credential(
            connector="notes", url=f"http://127.0.0.1:{port}{path}", headers={header: "x", "X-Team": "blue"}
        )
        try:
            with pytest.raises(UpstreamError, match=f"{header!r} is .*an admin must change the connector's headers"):
                await pool.list_tools_page(cred, None, None)
        finally:
            await pool.close()
        assert app.requests == 0
