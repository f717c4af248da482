"""The single egress to upstream MCP servers: guarded URLs, pooled sessions, timeouts.

One session per (connector, user, subject) -- `subject`: the end user a jwt_passthrough
credential vouches for, so users who share one agent key each get theirs -- opened lazily
with the credential's headers and kept while its connector's config version and credential
stay the same. A new credential for the same group opens a new session and retires the old
one, which is closed once its in-flight calls have answered (never under them). At most
`max_sessions` sessions per connector (least recently used closed first, after draining);
a session idle for `idle_s` is closed. A session lives in its own task (the SDK's
transports are task-scoped context managers); calls from any task go through it. Closing a
connector's sessions is immediate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from warden_common.contracts import Credential
from warden_common.netguard import AddressRefused, NetPolicy

from warden_proxy.egress import DEV_GUARD, GUARD, Egress
from warden_proxy.errors import UpstreamError, UpstreamResultTooLarge
from warden_proxy.lean import InvalidJson, LeanSession, RpcError, TooManyItems, UpstreamHttpError, longest_list

__all__ = ["UpstreamPool", "UpstreamUnauthorized", "credential_digest"]

log = logging.getLogger(__name__)


def policy_for(allow_insecure: bool) -> NetPolicy:
    return DEV_GUARD if allow_insecure else GUARD


class UpstreamUnauthorized(UpstreamError):
    """The upstream answered 401/403 to our credential."""

    def __init__(self, message: str, *, www_authenticate: str | None = None, status: int = 401) -> None:
        super().__init__(message)
        self.www_authenticate = www_authenticate
        self.status = status


def credential_digest(cred: Credential) -> str:
    """What identifies a credential's use: its headers, URL, transport and config version."""
    h = hashlib.sha256()
    for k in sorted(cred.headers):
        h.update(k.encode() + b"\0" + cred.headers[k].encode() + b"\0")
    h.update(f"{cred.url}|{cred.transport}|{cred.config_version}".encode())
    return h.hexdigest()


async def check_upstream_url(url: str, *, allow_insecure: bool) -> None:
    """Fail fast, with a reason, on URLs the egress (warden_proxy.egress) would refuse."""
    await Egress.for_setting(allow_insecure).check_url(url)


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
    if isinstance(exc, AddressRefused):
        return UpstreamError(f"upstream {connector}: {exc.message}")
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


@dataclass(eq=False)  # identity: sessions are kept in sets
class _Session:
    digest: str
    connector: str
    user: str = ""
    cred: Credential | None = None  # the last credential object seen with this digest
    lean: LeanSession | None = None  # streamable HTTP: the lean client
    client: Client | None = None  # legacy SSE: the SDK client, living in its own task
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None
    group: tuple[str, str, str] = ("", "", "")  # (connector, user, subject)
    inflight: int = 0  # requests sent on it and not yet answered
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False  # replaced or evicted: closed when its last request answers

    @property
    def open(self) -> bool:
        return self.lean is not None or self.client is not None


def _http_error(connector: str, e: UpstreamHttpError) -> UpstreamError:
    if e.status in (401, 403):
        return UpstreamUnauthorized(
            f"upstream {connector} refused Warden's credential (HTTP {e.status})",
            www_authenticate=e.www_authenticate,
            status=e.status,
        )
    return UpstreamError(f"upstream {connector} answered HTTP {e.status}; try again later or check the server")


def _invalid_json(connector: str) -> UpstreamError:
    return UpstreamError(f"upstream {connector} answered invalid JSON; check the server")


def _too_many(connector: str, count: int, limit: int) -> UpstreamResultTooLarge:
    return UpstreamResultTooLarge(
        f"upstream {connector} answered {count:,} items in one result; this gateway takes at most "
        f"{limit:,} (WARDEN_PROXY_MAX_RESULT_ITEMS)",
        details={"items": count, "limit": limit},
    )


class UpstreamPool:
    def __init__(
        self,
        *,
        allow_insecure: bool,
        on_tools_changed: Callable[[str], Awaitable[None]] | None = None,
        max_result_items: int | None = None,
        egress: Egress | None = None,
        max_sessions: int = 100,
        idle_s: float = 300.0,
    ) -> None:
        """`max_result_items`: the most items any list of an upstream result may hold (content
        items of a tool result, contents of a resource, ...); more is refused unbuilt.
        `max_sessions`: the most sessions kept open per connector; `idle_s`: how long an unused
        session stays open."""
        self.allow_insecure = allow_insecure
        self.max_result_items = max_result_items
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        # every upstream connection, of every transport, goes through this one seam
        self.egress = egress or Egress.for_setting(allow_insecure)
        # the current session of each (connector, user, subject); retired ones drain apart
        self._sessions: dict[tuple[str, str, str], _Session] = {}
        self._retired: set[_Session] = set()
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._on_tools_changed = on_tools_changed
        # other notifications an upstream sends outside any request (resources/updated, ...):
        # (connector, user, message); set by whoever fans them out to agents
        self.on_notification: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None

    async def _run_sse(self, s: _Session, cred: Credential) -> None:
        try:

            async def on_message(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification) and self._on_tools_changed is not None:
                    await self._on_tools_changed(s.connector)

            transport = sse_client(
                cred.url,
                headers=dict(cred.headers),
                timeout=cred.timeout_s,
                httpx_client_factory=self.egress.sdk_client_factory(cred.timeout_s),
            )
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

    async def _open(self, s: _Session, cred: Credential) -> None:
        if cred.transport == "sse":
            s.task = asyncio.create_task(self._run_sse(s, cred), name=f"upstream-{cred.connector}")
            try:
                await asyncio.wait_for(s.ready.wait(), timeout=cred.timeout_s)
            except TimeoutError:
                s.task.cancel()
                raise UpstreamError(f"upstream {cred.connector} did not complete the MCP handshake in time") from None
            if s.client is None:
                raise _translate(cred.connector, s.error or RuntimeError("session closed"))
            return

        async def changed() -> None:
            if self._on_tools_changed is not None:
                await self._on_tools_changed(cred.connector)

        async def notified(doc: dict[str, Any]) -> None:
            if self.on_notification is not None:
                await self.on_notification(s.connector, s.user, doc)

        lean = LeanSession(
            cred.url,
            dict(cred.headers),
            cred.timeout_s,
            on_tools_changed=changed,
            on_notification=notified,
            egress=self.egress,
            max_items=self.max_result_items,
        )
        try:
            await asyncio.wait_for(lean.open(), timeout=cred.timeout_s)
        except BaseException as e:
            await lean.close()
            if isinstance(e, TimeoutError):
                raise UpstreamError(f"upstream {cred.connector} did not complete the MCP handshake in time") from None
            if isinstance(e, UpstreamHttpError):
                raise _http_error(cred.connector, e) from None
            if isinstance(e, RpcError):
                raise UpstreamError(f"upstream {cred.connector} refused the MCP handshake: {e.message[:200]}") from None
            if isinstance(e, InvalidJson):
                raise _invalid_json(cred.connector) from None
            if isinstance(e, TooManyItems):
                raise _too_many(cred.connector, e.count, e.limit) from None
            if isinstance(e, httpx.HTTPError | OSError | ValueError | AddressRefused):
                raise _translate(cred.connector, e) from None
            raise
        s.lean = lean

    @staticmethod
    def _group(cred: Credential, user: str | None) -> tuple[str, str, str]:
        return (cred.connector, user or "", cred.subject or "")

    async def _session(self, cred: Credential, user: str | None) -> _Session:
        """The session for this credential, with one request counted in flight on it (the
        caller's: it must decrement `inflight` when its request has answered)."""
        key = self._group(cred, user)
        s = self._sessions.get(key)
        if s is not None and s.cred is cred and s.open:
            s.inflight += 1
            return s  # the very credential (cached, immutable) the session was opened or last checked with
        digest = credential_digest(cred)
        if s is not None and s.digest == digest and s.open:
            s.cred = cred
            s.inflight += 1
            return s
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            s = self._sessions.get(key)
            if s is not None and s.digest == digest and s.open:
                s.inflight += 1
                return s
            if s is not None:
                await self._retire(s)  # a new credential: the old session drains, then closes
            self.egress.check_headers(cred.connector, cred.headers)
            await self.egress.check_url(cred.url)
            s = _Session(digest=digest, connector=cred.connector, user=user or "", cred=cred, group=key)
            await self._open(s, cred)
            s.inflight = 1  # the caller's request: nobody retires it under that
            self._sessions[key] = s
            await self._make_room(s)
            return s

    async def _make_room(self, new: _Session) -> None:
        """Close idle sessions, then retire the least recently used of the connector's beyond
        the bound (never the one just opened)."""
        now = time.monotonic()
        for s in [s for s in self._sessions.values() if s.inflight == 0 and now - s.last_used > self.idle_s]:
            await self._retire(s)
        mine = sorted(
            (s for s in self._sessions.values() if s.connector == new.connector and s is not new),
            key=lambda s: s.last_used,
        )
        for s in mine[: max(0, len(mine) + 1 - self.max_sessions)]:
            await self._retire(s)
        self._locks = {k: v for k, v in self._locks.items() if k in self._sessions or v.locked()}

    async def _retire(self, s: _Session) -> None:
        """Take a session out of the pool; close it now if idle, else when its last request answers."""
        if self._sessions.get(s.group) is s:
            del self._sessions[s.group]
        if s.inflight == 0:
            self._retired.discard(s)
            await self._close_session(s)
        else:
            s.retired = True
            self._retired.add(s)

    async def _drop(self, s: _Session) -> None:
        """A broken session: out of the pool and closed now (its other requests fail too)."""
        if self._sessions.get(s.group) is s:
            del self._sessions[s.group]
        self._retired.discard(s)
        await self._close_session(s)

    async def _rpc(
        self, cred: Credential, user: str | None, method: str, params: dict[str, Any], progress: Any = None
    ) -> dict[str, Any]:
        """One JSON-RPC request on the pooled session; a vanished session is reopened once."""
        for attempt in (0, 1):
            s = await self._session(cred, user)
            try:
                # a timeout scope, not wait_for: no task of its own per request (same context, too)
                async with asyncio.timeout(cred.timeout_s):
                    if s.lean is not None:
                        raw = await s.lean.request(method, params, progress=progress)
                    else:
                        assert s.client is not None
                        raw = await self._sdk(s.client, method, params, progress)
            except TimeoutError:
                raise UpstreamError(f"upstream {cred.connector} did not answer within {cred.timeout_s:g}s") from None
            except UpstreamHttpError as e:
                await self._drop(s)
                if e.status == 404 and attempt == 0:
                    continue  # the upstream forgot our session: open a new one
                raise _http_error(cred.connector, e) from None
            except RpcError as e:
                raise UpstreamError(f"upstream {cred.connector} answered an error: {e.message[:300]}") from None
            except InvalidJson:
                raise _invalid_json(cred.connector) from None
            except TooManyItems as e:
                raise _too_many(cred.connector, e.count, e.limit) from None
            except MCPError as e:
                raise _translate(cred.connector, e) from None
            except (httpx.HTTPError, httpx2.HTTPError, OSError, ExceptionGroup) as e:
                await self._drop(s)
                if attempt == 0 and isinstance(e, httpx.RemoteProtocolError | httpx.ReadError):
                    continue  # a kept-alive connection the server had closed
                raise _translate(cred.connector, e) from None
            finally:
                s.inflight -= 1
                s.last_used = time.monotonic()
                if s.retired and s.inflight == 0 and s in self._retired:
                    self._retired.discard(s)
                    await self._close_session(s)
            # the lean client counted before building; the SDK's (legacy SSE) only after
            if self.max_result_items is not None and (n := longest_list(raw)) > self.max_result_items:
                raise _too_many(cred.connector, n, self.max_result_items)
            return raw
        raise UpstreamError(f"upstream {cred.connector} keeps dropping its session")

    @staticmethod
    async def _sdk(client: Client, method: str, params: dict[str, Any], progress: Any) -> dict[str, Any]:
        if method == "tools/call":
            r = await client.call_tool(params["name"], params.get("arguments") or {}, progress_callback=progress)
            return r.model_dump(mode="json", by_alias=True, exclude_none=True)
        if method == "tools/list":
            page = await client.list_tools(cursor=params.get("cursor"))
            return page.model_dump(mode="json", by_alias=True, exclude_none=True)
        return await UpstreamPool._sdk_other(client, method, params)

    @staticmethod
    async def _sdk_other(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Resources, prompts and completion over the SDK client (legacy SSE upstreams)."""
        r: Any
        if method == "resources/list":
            r = await client.list_resources(cursor=params.get("cursor"), cache_mode="bypass")
        elif method == "resources/templates/list":
            r = await client.list_resource_templates(cursor=params.get("cursor"), cache_mode="bypass")
        elif method == "resources/read":
            r = await client.read_resource(params["uri"], cache_mode="bypass")
        elif method == "resources/subscribe":
            r = await client.subscribe_resource(params["uri"])
        elif method == "resources/unsubscribe":
            r = await client.unsubscribe_resource(params["uri"])
        elif method == "prompts/list":
            r = await client.list_prompts(cursor=params.get("cursor"), cache_mode="bypass")
        elif method == "prompts/get":
            r = await client.get_prompt(params["name"], params.get("arguments"))
        elif method == "completion/complete":
            ref_t = (
                types.PromptReference if params["ref"].get("type") == "ref/prompt" else types.ResourceTemplateReference
            )
            ctx = (params.get("context") or {}).get("arguments")
            r = await client.complete(ref_t.model_validate(params["ref"]), params["argument"], ctx)
        else:
            raise MCPError(-32601, f"{method} is not supported on SSE upstreams")
        return dict(r.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def request(self, cred: Credential, user: str | None, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Any other request (resources, prompts, completion) on the pooled session: the raw result."""
        return await self._rpc(cred, user, method, params)

    async def call_tool(
        self, cred: Credential, user: str | None, name: str, arguments: dict[str, Any], progress: Any = None
    ) -> types.CallToolResult:
        raw = await self._rpc(cred, user, "tools/call", {"name": name, "arguments": arguments}, progress)
        try:
            return types.CallToolResult.model_validate(raw)
        except ValidationError:
            raise UpstreamError(f"upstream {cred.connector} answered a malformed tool result") from None

    async def list_tools_page(
        self, cred: Credential, user: str | None, cursor: str | None
    ) -> tuple[list[types.Tool], str | None]:
        raw = await self._rpc(cred, user, "tools/list", {"cursor": cursor} if cursor else {})
        try:
            page = types.ListToolsResult.model_validate(raw)
        except ValidationError:
            raise UpstreamError(f"upstream {cred.connector} answered a malformed tool list") from None
        return list(page.tools), page.next_cursor

    async def _close_session(self, s: _Session) -> None:
        if s.lean is not None:
            lean, s.lean = s.lean, None
            await lean.close()
        s.stop.set()
        if s.task is not None:
            try:
                await asyncio.wait_for(s.task, timeout=5)
            except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - closing best effort
                s.task.cancel()

    def sessions(self, connector: str) -> int:
        """How many sessions this connector has open (draining ones included)."""
        return sum(1 for s in [*self._sessions.values(), *self._retired] if s.connector == connector)

    async def close_credential(self, cred: Credential, user: str | None) -> None:
        """Close the session of this credential's (connector, user, subject) now: its upstream
        refused it. Other users' sessions of the connector are left alone."""
        if (s := self._sessions.get(self._group(cred, user))) is not None:
            await self._drop(s)

    async def close_connector(self, connector: str) -> None:
        for s in [s for s in [*self._sessions.values(), *self._retired] if s.connector == connector]:
            await self._drop(s)

    async def close(self) -> None:
        for s in [*self._sessions.values(), *self._retired]:
            await self._drop(s)
