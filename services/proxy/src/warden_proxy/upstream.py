"""The single egress to upstream MCP servers: guarded URLs, pooled sessions, timeouts.

One session per (connector, user), opened lazily with the credential's headers and
kept while its connector's config version and credential stay the same. A session
lives in its own task (the SDK's transports are task-scoped context managers); calls
from any task go through it. Closing a connector's sessions is immediate.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from warden_common.contracts import Credential
from warden_common.errors import BadInput

from warden_proxy.errors import UpstreamError

__all__ = ["UpstreamPool", "UpstreamUnauthorized"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class UpstreamUnauthorized(UpstreamError):
    """The upstream answered 401/403 to our credential."""

    def __init__(self, message: str, *, www_authenticate: str | None = None, status: int = 401) -> None:
        super().__init__(message)
        self.www_authenticate = www_authenticate
        self.status = status


def _digest(cred: Credential) -> str:
    h = hashlib.sha256()
    for k in sorted(cred.headers):
        h.update(k.encode() + b"\0" + cred.headers[k].encode() + b"\0")
    h.update(f"{cred.url}|{cred.transport}|{cred.config_version}".encode())
    return h.hexdigest()


async def check_upstream_url(url: str, *, allow_insecure: bool) -> None:
    """Refuse URLs that point inside our network unless the dev setting allows it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput("upstream URL must be absolute http(s)")
    if allow_insecure:
        return
    if parts.scheme != "https":
        raise BadInput("upstream URL must use https")
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM), 5)
    except (OSError, TimeoutError):
        raise UpstreamError(f"cannot resolve upstream host {parts.hostname}") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise BadInput(f"upstream host {parts.hostname} resolves to a non-public address; refused")


def _status_of(exc: BaseException) -> tuple[int | None, str | None]:
    """Find an HTTP status (and WWW-Authenticate) anywhere in an exception chain or group."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, httpx2.HTTPStatusError):
            return e.response.status_code, e.response.headers.get("www-authenticate")
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        if e.__cause__ is not None:
            stack.append(e.__cause__)
        if e.__context__ is not None:
            stack.append(e.__context__)
    return None, None


def _translate(connector: str, exc: BaseException) -> UpstreamError:
    status, www = _status_of(exc)
    if status in (401, 403):
        return UpstreamUnauthorized(
            f"upstream {connector} refused Warden's credential (HTTP {status})", www_authenticate=www, status=status
        )
    if status is not None:
        return UpstreamError(f"upstream {connector} answered HTTP {status}; try again later or check the server")
    if isinstance(exc, TimeoutError):
        return UpstreamError(f"upstream {connector} did not answer in time")
    if isinstance(exc, MCPError):
        return UpstreamError(f"upstream {connector} answered an error: {exc.message[:300]}")
    return UpstreamError(f"upstream {connector} is unreachable ({type(exc).__name__}); check that the server is up")


@dataclass
class _Session:
    digest: str
    connector: str
    client: Client | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None
    last_status: int | None = None
    last_www: str | None = None


class UpstreamPool:
    def __init__(
        self, *, allow_insecure: bool, on_tools_changed: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        self.allow_insecure = allow_insecure
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._on_tools_changed = on_tools_changed

    async def _run(self, s: _Session, cred: Credential) -> None:
        try:
            headers = dict(cred.headers)
            if cred.transport == "sse":
                transport: Any = sse_client(cred.url, headers=headers, timeout=cred.timeout_s)
            else:

                async def remember_status(response: httpx2.Response) -> None:
                    # the SDK turns an HTTP error into a generic JSON-RPC error; keep the status
                    if response.status_code >= 400:
                        s.last_status = response.status_code
                        s.last_www = response.headers.get("www-authenticate")

                http = httpx2.AsyncClient(
                    headers=headers,
                    timeout=httpx2.Timeout(cred.timeout_s, read=max(cred.timeout_s, 300.0)),
                    event_hooks={"response": [remember_status]},
                )
                transport = streamable_http_client(cred.url, http_client=http)

            async def on_message(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification) and self._on_tools_changed is not None:
                    await self._on_tools_changed(s.connector)

            async with Client(transport, cache=None, message_handler=on_message) as client:
                s.client = client
                s.ready.set()
                await s.stop.wait()
        except BaseException as e:  # noqa: BLE001 - recorded and re-raised to callers
            s.error = e
            s.ready.set()
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            s.client = None

    async def _session(self, cred: Credential, user: str | None) -> _Session:
        key = (cred.connector, user or "")
        digest = _digest(cred)
        s = self._sessions.get(key)
        if s is not None and s.digest == digest and s.client is not None:
            return s
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            s = self._sessions.get(key)
            if s is not None and s.digest == digest and s.client is not None:
                return s
            if s is not None:
                await self._close(key)
            await check_upstream_url(cred.url, allow_insecure=self.allow_insecure)
            s = _Session(digest=digest, connector=cred.connector)
            s.task = asyncio.create_task(self._run(s, cred), name=f"upstream-{cred.connector}")
            try:
                await asyncio.wait_for(s.ready.wait(), timeout=cred.timeout_s)
            except TimeoutError:
                s.task.cancel()
                raise UpstreamError(f"upstream {cred.connector} did not complete the MCP handshake in time") from None
            if s.client is None:
                if s.last_status in (401, 403):
                    raise UpstreamUnauthorized(
                        f"upstream {cred.connector} refused Warden's credential (HTTP {s.last_status})",
                        www_authenticate=s.last_www,
                        status=s.last_status,
                    )
                if s.last_status is not None:
                    raise UpstreamError(
                        f"upstream {cred.connector} answered HTTP {s.last_status}; try again later or check the server"
                    )
                raise _translate(cred.connector, s.error or RuntimeError("session closed"))
            self._sessions[key] = s
            return s

    async def _with_session(self, cred: Credential, user: str | None, fn: Callable[[Client], Awaitable[T]]) -> T:
        s = await self._session(cred, user)
        assert s.client is not None
        s.last_status = None
        try:
            return await asyncio.wait_for(fn(s.client), timeout=cred.timeout_s)
        except TimeoutError:
            raise UpstreamError(f"upstream {cred.connector} did not answer within {cred.timeout_s:g}s") from None
        except MCPError as e:
            status = s.last_status
            if status is not None:
                await self._close((cred.connector, user or ""))
                if status in (401, 403):
                    raise UpstreamUnauthorized(
                        f"upstream {cred.connector} refused Warden's credential (HTTP {status})",
                        www_authenticate=s.last_www,
                        status=status,
                    ) from None
                raise UpstreamError(
                    f"upstream {cred.connector} answered HTTP {status}; try again later or check the server"
                ) from None
            raise _translate(cred.connector, e) from None
        except (httpx2.HTTPError, OSError, ExceptionGroup) as e:
            await self._close((cred.connector, user or ""))
            raise _translate(cred.connector, e) from None

    async def call_tool(
        self, cred: Credential, user: str | None, name: str, arguments: dict[str, Any], progress: Any = None
    ) -> types.CallToolResult:
        async def fn(c: Client) -> types.CallToolResult:
            return await c.call_tool(name, arguments, progress_callback=progress)

        return await self._with_session(cred, user, fn)

    async def list_tools_page(
        self, cred: Credential, user: str | None, cursor: str | None
    ) -> tuple[list[types.Tool], str | None]:
        async def fn(c: Client) -> tuple[list[types.Tool], str | None]:
            page = await c.list_tools(cursor=cursor)
            return list(page.tools), page.next_cursor

        return await self._with_session(cred, user, fn)

    async def _close(self, key: tuple[str, str]) -> None:
        s = self._sessions.pop(key, None)
        if s is None:
            return
        s.stop.set()
        if s.task is not None:
            try:
                await asyncio.wait_for(s.task, timeout=5)
            except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - closing best effort
                s.task.cancel()

    async def close_connector(self, connector: str) -> None:
        for key in [k for k in self._sessions if k[0] == connector]:
            await self._close(key)

    async def close(self) -> None:
        for key in list(self._sessions):
            await self._close(key)
