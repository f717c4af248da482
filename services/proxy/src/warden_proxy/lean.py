"""A lean MCP client for the hot path: JSON-RPC over streamable HTTP on a pooled httpx client.

The SDK's client runs several tasks and memory streams per request; on two cores that
was most of the proxy's CPU per call. This speaks only what the proxy needs from an
upstream — initialize, requests, progress and list_changed notifications — and keeps one
HTTP/1.1 keep-alive pool per session. The SDK client is still used for the legacy SSE
transport.

What the upstream sends on a request's stream besides its answer goes to the `RELAY` of
the task that made the request (the MCP endpoint sets one around an agent's call): log
messages, and server-to-client requests (sampling, elicitation), whose answers are posted
back upstream. Without a relay (internal callers, the notification stream), such a
request is answered with an error at once, so the upstream never waits for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

import httpx
import orjson
from warden_common import otel
from warden_common.netguard import NetPolicy
from warden_common.tracing import current_trace_id, traceparent

from warden_proxy.egress import Egress
from warden_proxy.h1 import H1Pool, H1Response, TooLarge, read_capped, usable_for

__all__ = [
    "CLIENT_CAPABILITIES",
    "RELAY",
    "InvalidJson",
    "LeanSession",
    "Relay",
    "RpcError",
    "TooManyItems",
    "UpstreamHttpError",
    "longest_list",
]

log = logging.getLogger(__name__)
PROTOCOL_VERSION = "2025-06-18"
_ACCEPT = "application/json, text/event-stream"
_MAX_EVENT_BYTES = 16 * 1024 * 1024


class UpstreamHttpError(Exception):
    def __init__(self, status: int, www_authenticate: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.www_authenticate = www_authenticate


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidJson(Exception):
    """The upstream's answer to a request (or one message on its stream) is not JSON."""


class TooManyItems(Exception):
    """A list in the upstream's result has more items than the session takes (`max_items`)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} items, at most {limit}")
        self.count = count
        self.limit = limit


ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
# what Warden offers upstream on behalf of its callers; a caller without the capability gets
# the upstream's request refused by its relay
CLIENT_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {}}
_METHOD_NOT_FOUND = -32601


class Relay(Protocol):
    """The calling agent's side of one upstream request."""

    async def log(self, params: dict[str, Any]) -> None: ...

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the agent; raise `RpcError` to answer the upstream with an error."""
        ...


RELAY: ContextVar[Relay | None] = ContextVar("warden_upstream_relay", default=None)


class LeanSession:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout_s: float,
        on_tools_changed: Callable[[], Awaitable[None]] | None = None,
        on_notification: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        policy: NetPolicy | None = None,
        max_items: int | None = None,
        egress: Egress | None = None,
    ) -> None:
        """`egress`: the seam every connection goes through (address policy, pinning, resolver);
        `policy` alone: that policy with the system resolver; neither: no guard (tests only).
        `max_items`: the most items any list of a result may hold (None: no bound)."""
        if egress is None and policy is not None:
            egress = Egress(policy, allow_http=True)
        self.url = url
        self.max_items = max_items
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(
            headers={**headers, "Accept": _ACCEPT},
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
            transport=egress.httpx_transport(timeout_s) if egress is not None else None,
        )
        # requests (the hot path) on the lean HTTP/1.1 client; the rest stays on httpx. A guarded
        # session never uses an environment proxy (the guard decides where bytes go).
        self._h1 = (
            egress.h1_pool(url, connect_timeout_s=timeout_s)
            if egress is not None
            else H1Pool(url, connect_timeout_s=timeout_s)
            if usable_for(url)
            else None
        )
        self._h1_headers = {"User-Agent": "warden-proxy", **headers, "Accept": _ACCEPT}
        self._h1_cached: tuple[tuple[str, str | None], bytes] | None = None
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        self._ids = itertools.count(1)
        self._on_tools_changed = on_tools_changed
        self._on_notification = on_notification
        self._listener: asyncio.Task[None] | None = None

    def _h1_head(self) -> bytes:
        """The lean client's header block, encoded once per protocol version and session id."""
        key = (self.protocol_version, self.session_id)
        if self._h1_cached is None or self._h1_cached[0] != key:
            assert self._h1 is not None
            headers = {**self._h1_headers, **self._headers(), "Content-Type": "application/json"}
            self._h1_cached = (key, self._h1.head(headers))
        return self._h1_cached[1]

    def _headers(self) -> dict[str, str]:
        h = {"MCP-Protocol-Version": self.protocol_version}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        return h

    async def open(self) -> None:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": CLIENT_CAPABILITIES,
                "clientInfo": {"name": "warden-proxy", "version": "0.1.0"},
            },
            initializing=True,
        )
        self.protocol_version = str(result.get("protocolVersion") or PROTOCOL_VERSION)
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if self.session_id and self._on_tools_changed is not None:
            self._listener = asyncio.create_task(self._listen(), name="upstream-notifications")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self.session_id:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(self.url, headers=self._headers(), timeout=2)
        await self.http.aclose()
        if self._h1 is not None:
            self._h1.close()

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        r = await self.http.post(
            self.url, content=_dumps(body), headers={**self._headers(), "Content-Type": "application/json"}
        )
        if r.status_code >= 400:
            raise UpstreamHttpError(r.status_code, r.headers.get("www-authenticate"))
        return r

    async def request(
        self, method: str, params: dict[str, Any], *, progress: ProgressFn | None = None, initializing: bool = False
    ) -> dict[str, Any]:
        if not otel.enabled():
            return await self._request(method, params, progress, initializing)
        # the upstream HTTP request: its traceparent names this span as the upstream's parent
        with otel.span(f"upstream {method}", kind="client", attributes={"rpc.method": method}) as s:
            try:
                out = await self._request(method, params, progress, initializing)
            except UpstreamHttpError as e:
                s.set_attribute("http.response.status_code", e.status)
                raise
            return out

    async def _request(
        self, method: str, params: dict[str, Any], progress: ProgressFn | None, initializing: bool
    ) -> dict[str, Any]:
        rid = next(self._ids)
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        if progress is not None:
            body["params"] = {**params, "_meta": {"progressToken": rid}}
        content = _dumps(body)
        r: httpx.Response | H1Response
        tid = current_trace_id()  # the call's trace goes on to the upstream (W3C traceparent)
        if self._h1 is not None:
            head = self._h1_head()
            if tid:
                head += b"traceparent: %s\r\n" % traceparent(tid).encode()
            r = await self._h1.post_head(head, content)
        else:
            headers = {**self._headers(), "Content-Type": "application/json"}
            if tid:
                headers["traceparent"] = traceparent(tid)
            req = self.http.build_request("POST", self.url, content=content, headers=headers)
            r = await self.http.send(req, stream=True)
        try:
            if r.status_code >= 400:
                raise UpstreamHttpError(r.status_code, r.headers.get("www-authenticate"))
            if initializing and (sid := r.headers.get("mcp-session-id")):
                self.session_id = sid
            ctype = r.headers.get("content-type", "").lower()
            if ctype.startswith("application/json"):
                doc = _parse(await _body(r), self.max_items)
                return self._result(doc, rid)
            if ctype.startswith("text/event-stream"):
                async for doc in _sse_messages(r, self.max_items, strict=True):
                    if doc.get("id") == rid and ("result" in doc or "error" in doc):
                        return self._result(doc, rid)
                    await self._notification(doc, progress)
                raise RpcError(-32000, "the upstream closed the stream before answering")
            raise RpcError(-32000, f"the upstream answered with content type {ctype or 'none'}")
        finally:
            await r.aclose()

    @staticmethod
    def _result(doc: Any, rid: int) -> dict[str, Any]:
        if not isinstance(doc, dict) or doc.get("id") != rid:
            raise RpcError(-32000, "the upstream answered a different request")
        if "error" in doc:
            err = doc["error"] if isinstance(doc["error"], dict) else {}
            raise RpcError(int(err.get("code", -32000)), str(err.get("message", "error"))[:500])
        result = doc.get("result")
        if not isinstance(result, dict):
            raise RpcError(-32000, "the upstream's result is not an object")
        return result

    async def _notification(self, doc: dict[str, Any], progress: ProgressFn | None) -> None:
        method = doc.get("method")
        if not isinstance(method, str):
            return
        if "id" in doc:
            await self._serve(doc["id"], method, doc.get("params") or {})
        elif method == "notifications/progress" and progress is not None:
            p = doc.get("params") or {}
            with contextlib.suppress(TypeError, ValueError):
                await progress(float(p.get("progress", 0)), p.get("total"), p.get("message"))
        elif method == "notifications/tools/list_changed" and self._on_tools_changed is not None:
            await self._on_tools_changed()
        elif method == "notifications/message" and (relay := RELAY.get()) is not None:
            await relay.log(doc.get("params") or {})
        elif self._on_notification is not None and method.startswith("notifications/"):
            await self._on_notification(doc)

    async def _serve(self, rid: Any, method: str, params: Any) -> None:
        """Answer a request the upstream made of us: through the caller's relay, if any."""
        relay = RELAY.get()
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if method == "ping":
            answer["result"] = {}
        elif relay is None or not isinstance(params, dict):
            answer["error"] = {"code": _METHOD_NOT_FOUND, "message": f"{method} is not available through Warden here"}
        else:
            try:
                answer["result"] = await relay.request(method, params)
            except RpcError as e:
                answer["error"] = {"code": e.code, "message": e.message}
        try:
            await self._post(answer)
        except (httpx.HTTPError, UpstreamHttpError) as e:
            log.debug("could not answer the upstream's %s: %s", method, type(e).__name__)

    async def _listen(self) -> None:
        """The standalone GET stream: server-initiated notifications (tools/list_changed)."""
        delay = 1.0
        while True:
            try:
                async with self.http.stream(
                    "GET",
                    self.url,
                    headers={**self._headers(), "Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self.timeout_s, read=None),
                ) as r:
                    if r.status_code in (404, 405):
                        return  # the server offers no standalone stream
                    if r.status_code >= 400:
                        raise UpstreamHttpError(r.status_code, None)
                    delay = 1.0
                    async for doc in _sse_messages(r):
                        await self._notification(doc, None)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, UpstreamHttpError, RpcError) as e:
                log.debug("upstream notification stream ended: %s", type(e).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _body(r: httpx.Response | H1Response) -> bytes:
    """A JSON answer, at most `_MAX_EVENT_BYTES` (what one SSE message may carry too)."""
    try:
        if isinstance(r, H1Response):
            return await r.aread(_MAX_EVENT_BYTES)
        return await read_capped(r.aiter_bytes(), _MAX_EVENT_BYTES)
    except TooLarge:
        raise RpcError(
            -32000, f"the upstream's answer exceeded the size limit ({_MAX_EVENT_BYTES >> 20} MiB)"
        ) from None


def _dumps(body: dict[str, Any]) -> bytes:
    """orjson (a tenth of the json module's time); the json module for what orjson cannot
    write (integers past 64 bits from a caller's arguments)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _loads(raw: bytes | str) -> Any:
    """orjson; the json module for what it refuses and the json module reads (NaN,
    Infinity, lone surrogate escapes), so either way the same documents are accepted."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def longest_list(obj: dict[str, Any]) -> int:
    """How many items the longest list among `obj`'s values holds."""
    return max((len(v) for v in obj.values() if isinstance(v, list)), default=0)


def _collapse(obj: dict[str, Any]) -> Any:
    # every object but a JSON-RPC envelope becomes the length of its longest list: what is
    # left of a message is {"result": <the longest list of the result>, ...}
    return obj if "result" in obj else longest_list(obj)


def _result_items(raw: bytes | str, limit: int) -> int:
    """The most items a list of this message's result holds, or 0 when it cannot pass
    `limit` (every item of a result is an object, so the body has no more objects than
    `{` bytes). Counted without building the message: each object is dropped as soon as it
    is read, so a body of 400,000 items costs a few MB here, not the hundreds the whole
    message would."""
    braces = raw.count(b"{") if isinstance(raw, bytes) else raw.count("{")
    if braces <= limit:
        return 0
    try:
        doc = json.loads(raw, object_hook=_collapse)
    except (ValueError, RecursionError):
        raise InvalidJson from None
    result = doc.get("result") if isinstance(doc, dict) else None
    if isinstance(result, dict):
        return longest_list(result)
    return result if isinstance(result, int) else 0


def _parse(raw: bytes | str, max_items: int | None) -> Any:
    """One JSON-RPC message from the upstream, refused before it is built when a list of its
    result holds more than `max_items`."""
    if max_items is not None and (n := _result_items(raw, max_items)) > max_items:
        raise TooManyItems(n, max_items)
    try:
        return _loads(raw)
    except (ValueError, RecursionError):
        raise InvalidJson from None


async def _sse_messages(r: httpx.Response | H1Response, max_items: int | None = None, *, strict: bool = False) -> Any:
    """JSON-RPC messages from an SSE body (data lines joined per event). `strict` (a
    request's own stream): an event that is not JSON ends it with `InvalidJson`; else it is
    skipped."""
    data: list[str] = []
    size = 0
    async for line in r.aiter_lines():
        if line == "":
            if data:
                payload = "\n".join(data)
                data, size = [], 0
                try:
                    doc = _parse(payload, max_items)
                except InvalidJson:
                    if strict:
                        raise
                    continue
                if isinstance(doc, dict):
                    yield doc
            continue
        if line.startswith("data:"):
            chunk = line[5:].lstrip(" ")
            size += len(chunk)
            if size > _MAX_EVENT_BYTES:
                raise RpcError(-32000, "an upstream event exceeded the size limit")
            data.append(chunk)
