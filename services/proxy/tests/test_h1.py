"""The lean HTTP/1.1 client against a real socket server that answers scripted bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from warden_proxy.h1 import H1Pool, TooLarge

Answer = Callable[[bytes], bytes | None]  # request bytes -> response bytes (None: close)


@asynccontextmanager
async def _server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers each request with `answer(request)`; yields (url, connections seen)."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                body = await reader.readexactly(length)
                out = answer(head + body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp?x=1", conns
    finally:
        server.close()


def _json(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def test_requests_reuse_one_kept_alive_connection_and_send_what_they_must() -> None:
    seen: list[bytes] = []

    def answer(req: bytes) -> bytes:
        seen.append(req)
        return _json(b'{"ok":1}')

    async with _server(answer) as (url, conns):
        pool = H1Pool(url, connect_timeout_s=5)
        for _ in range(3):
            r = await pool.post({"Authorization": "Bearer t", "Content-Type": "application/json"}, b'{"a":1}')
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert await r.aread() == b'{"ok":1}'
            await r.aclose()
        pool.close()
    assert len(conns) == 1
    head = seen[0].split(b"\r\n\r\n")[0]
    assert head.startswith(b"POST /mcp?x=1 HTTP/1.1\r\n") and b"\r\nHost: 127.0.0.1:" in head
    assert b"\r\nAuthorization: Bearer t" in head and b"\r\nContent-Length: 7" in head
    assert seen[0].endswith(b'{"a":1}')


async def test_chunked_sse_lines_split_across_reads_and_errors_keep_their_status() -> None:
    sse = b'event: message\r\ndata: {"a":\r\n\r\ndata: 2\n\n'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(sse[i : i + 5]), sse[i : i + 5]) for i in range(0, len(sse), 5))

    def answer(req: bytes) -> bytes:
        if b"401" in req:
            www = b'WWW-Authenticate: Bearer error="invalid_token"\r\n'
            return b"HTTP/1.1 401 Unauthorized\r\n" + www + b"Content-Length: 0\r\n\r\n"
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n"
        )

    async with _server(answer) as (url, conns):
        pool = H1Pool(url, connect_timeout_s=5)
        r = await pool.post({}, b"sse")
        assert [line async for line in r.aiter_lines()] == ["event: message", 'data: {"a":', "", "data: 2", ""]
        await r.aclose()
        r = await pool.post({}, b"401")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        await r.aread()
        await r.aclose()
        pool.close()
    assert len(conns) == 1


async def test_a_connection_the_server_closed_is_not_reused_and_a_dead_server_is_a_connect_error() -> None:
    def answer(req: bytes) -> bytes:
        return _json(b"{}", b"Connection: close\r\n")

    async with _server(answer) as (url, conns):
        pool = H1Pool(url, connect_timeout_s=5)
        for _ in range(2):
            r = await pool.post({}, b"x")
            await r.aread()
            await r.aclose()
        pool.close()
    assert len(conns) == 2
    with pytest.raises(httpx.ConnectError):
        await H1Pool(url, connect_timeout_s=5).post({}, b"x")


async def test_a_server_that_hangs_up_without_answering_is_a_remote_protocol_error() -> None:
    async with _server(lambda req: None) as (url, _):
        pool = H1Pool(url, connect_timeout_s=5)
        with pytest.raises(httpx.RemoteProtocolError):
            await pool.post({}, b"x")
        with pytest.raises(httpx.LocalProtocolError):
            await pool.post({"X-Bad": "a\r\nInjected: 1"}, b"x")
        pool.close()


async def test_a_body_past_the_limit_is_refused_and_its_connection_not_reused() -> None:
    big = b'{"pad":"' + b"x" * 5000 + b'"}'
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 1000]), big[i : i + 1000]) for i in range(0, len(big), 1000))
        + b"0\r\n\r\n"
    )
    answers = iter([_json(big), chunked, _json(b'{"ok":1}'), _json(b'{"ok":1}')])
    async with _server(lambda _: next(answers)) as (url, conns):
        pool = H1Pool(url, connect_timeout_s=5)
        for _ in range(2):  # Content-Length, then chunked
            r = await pool.post({}, b"{}")
            with pytest.raises(TooLarge):
                await r.aread(limit=4096)
            await r.aclose()
        r = await pool.post({}, b"{}")
        assert await r.aread(limit=4096) == b'{"ok":1}'
        await r.aclose()
        r = await pool.post({}, b"{}")
        assert await r.aread(limit=4096) == b'{"ok":1}'
        await r.aclose()
        pool.close()
    assert len(conns) == 3  # each refused body cost its connection; the answers after share one
