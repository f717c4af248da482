"""A minimal HTTP/1.1 keep-alive client for the upstream hot path (JSON-RPC POSTs).

httpx + httpcore spend, per request, more CPU than the rest of a proxied call's upstream
leg: request and URL objects, cookie handling, a pool that polls every idle socket for
expiry, and a header write and a body write. This sends each request in one write on a
kept-alive connection and reads the answer with asyncio streams: status line, headers,
and a body by Content-Length, chunked, or until close, read whole or as lines (SSE).

Errors are httpx's, so callers handle both clients alike: `ConnectError` (cannot connect),
`RemoteProtocolError` (the server closed a kept-alive connection before answering, or
answered something that is not HTTP/1.x), `ReadError` (the connection broke mid-answer),
`LocalProtocolError` (a header we must not send). TLS uses httpx's own default context.
Requests that would go through an environment proxy stay on httpx (`usable_for`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from warden_common.netguard import NetPolicy, ResolveFailed, Resolver, resolve_checked, system_resolver

__all__ = ["H1Pool", "H1Response", "usable_for"]

_LIMIT = 1024 * 1024  # the longest header block or chunk-size line we read
_READ = 64 * 1024
_MAX_IDLE = 32


def usable_for(url: str) -> bool:
    """http(s) without an environment proxy for this host (httpx would use one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if not any(k in proxies for k in (parts.scheme, "all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


class _Conn:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class TooLarge(Exception):
    """A response body past the caller's limit."""


async def read_capped(chunks: AsyncIterator[bytes], limit: int | None) -> bytes:
    """A body's chunks joined; past `limit` bytes, `TooLarge`."""
    out: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if limit is not None and size > limit:
            raise TooLarge(size)
        out.append(chunk)
    return b"".join(out)


class H1Response:
    """A response whose body is still on the wire: `aread()` or `aiter_lines()`, then `aclose()`."""

    def __init__(self, pool: H1Pool, conn: _Conn, status: int, headers: dict[str, str], keep_alive: bool) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
        self.status_code = status
        self.headers = headers
        self._keep_alive = keep_alive
        self._done = False
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        cl = headers.get("content-length")
        self._left: int | None = None
        if not self._chunked and cl is not None:
            try:
                self._left = int(cl)
            except ValueError:
                raise httpx.RemoteProtocolError("malformed Content-Length") from None
            if self._left < 0:
                raise httpx.RemoteProtocolError("malformed Content-Length")
        elif not self._chunked:
            self._keep_alive = False  # delimited by close
        if self._left == 0:
            self._done = True

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        assert self._conn is not None
        r = self._conn.reader
        try:
            if self._chunked:
                while not self._done:
                    line = await r.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await r.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers
                        self._done = True
                        break
                    data = await r.readexactly(size)
                    await r.readexactly(2)
                    yield data
            elif self._left is not None:
                while self._left > 0:
                    data = await r.read(min(self._left, _READ))
                    if not data:
                        raise httpx.ReadError("the server closed the connection mid-body")
                    self._left -= len(data)
                    yield data
                self._done = True
            else:
                while data := await r.read(_READ):
                    yield data
                self._done = True
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError) as e:
            self._keep_alive = False
            raise httpx.ReadError(f"reading the response failed ({type(e).__name__})") from None

    async def aread(self, limit: int | None = None) -> bytes:
        """The whole body; past `limit` bytes, `TooLarge` (and the connection is not reused)."""
        if self._left is not None and self._conn is not None:  # Content-Length: one read
            n = self._left
            if limit is not None and n > limit:
                self._keep_alive = False
                raise TooLarge(n)
            try:
                data = await self._conn.reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                self._keep_alive = False
                raise httpx.ReadError(f"reading the response failed ({type(e).__name__})") from None
            self._left = 0
            self._done = True
            return data
        try:
            return await read_capped(self.aiter_bytes(), limit)
        except TooLarge:
            self._keep_alive = False
            raise

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines split on \\n, \\r\\n or \\r, as httpx does (a \\r\\n split across reads is one break)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        # the pieces of a line longer than one read, joined once when it ends (adding each read
        # to the line so far would copy a 15 MB line some 250 times)
        parts: list[str] = []
        async for chunk in self.aiter_bytes():
            piece = decoder.decode(chunk)
            if "\n" not in piece and "\r" not in piece and not pending.endswith("\r"):
                if pending:
                    parts.append(pending)
                    pending = ""
                parts.append(piece)
                continue
            if parts:
                parts.append(pending)
                pending = "".join(parts)
                parts = []
            text = pending + piece
            hold = text.endswith("\r")  # its \n may come with the next read
            lines = (text[:-1] if hold else text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
            pending = lines.pop() + ("\r" if hold else "")
            for line in lines:
                yield line
        pending = "".join([*parts, pending]) + decoder.decode(b"", final=True)
        for line in pending.replace("\r\n", "\n").replace("\r", "\n").split("\n") if pending else []:
            yield line

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep_alive and conn.usable:
            self._pool._release(conn)
        else:
            conn.close()


class H1Pool:
    """Kept-alive connections to one origin; a request takes one, its response gives it back."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float,
        policy: NetPolicy | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError("absolute URL required")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        default = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if default else f"{host}:{self.port}"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connect_timeout_s = connect_timeout_s
        # the address guard (libs/common netguard): connect only to checked addresses; None = dev
        self.policy = policy
        self.resolver = resolver
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            self._ssl = httpx.create_ssl_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        self._idle: deque[_Conn] = deque()
        self._closed = False

    async def _connect(self) -> _Conn:
        targets: list[str] = [self.host]
        if self.policy is not None:  # resolve once, check every address, connect to a checked one
            try:
                targets = [
                    str(ip) for ip in await resolve_checked(self.host, self.port, self.policy, resolver=self.resolver)
                ]
            except ResolveFailed:
                raise httpx.ConnectError(f"cannot resolve {self.host}") from None
        last: Exception | None = None
        for target in targets:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        target,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self.host if self.tls else None,
                        limit=_LIMIT,
                    ),
                    self.connect_timeout_s,
                )
            except TimeoutError:
                last = httpx.ConnectTimeout(f"connecting to {self.authority} timed out")
            except (OSError, ssl.SSLError) as e:
                last = httpx.ConnectError(f"cannot connect to {self.authority} ({type(e).__name__})")
            else:
                return _Conn(reader, writer)
        assert last is not None
        raise last

    def _release(self, conn: _Conn) -> None:
        if self._closed or len(self._idle) >= _MAX_IDLE:
            conn.close()
            return
        conn.reused = True
        self._idle.append(conn)

    def head(self, headers: dict[str, str]) -> bytes:
        """The request line and headers (all but Content-Length), checked and encoded once: a
        session sends the same ones with every request (`post_head`)."""
        head = [f"POST {self.target} HTTP/1.1", f"Host: {self.authority}"]
        for k, v in headers.items():
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k:
                raise httpx.LocalProtocolError("a header name or value has a line break")
            head.append(f"{k}: {v}")
        return ("\r\n".join(head) + "\r\n").encode()

    async def post(self, headers: dict[str, str], body: bytes) -> H1Response:
        return await self.post_head(self.head(headers), body)

    async def post_head(self, head: bytes, body: bytes) -> H1Response:
        """POST `body` after a block from `head()`: one write on a kept-alive connection."""
        wire = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        conn: _Conn | None = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.usable:
                conn = candidate
                break
            candidate.close()
        if conn is None:
            conn = await self._connect()
        try:
            conn.writer.write(wire)
            return await self._response(conn)
        except BaseException:
            conn.close()
            raise

    async def _response(self, conn: _Conn) -> H1Response:
        try:
            block = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
            raise httpx.ReadError("the server closed the connection mid-headers") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("the response's header block is too long") from None
        except ConnectionError as e:
            raise httpx.ReadError(f"reading the response failed ({type(e).__name__})") from None
        lines = block[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest.split(" ", 1)[0]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise httpx.RemoteProtocolError("the server did not answer HTTP/1.x")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise httpx.RemoteProtocolError("malformed response header")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = int(code)
        if 100 <= status < 200:
            return await self._response(conn)  # 100 Continue and friends: the real answer follows
        keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        return H1Response(self, conn, status, headers, keep_alive)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
