"""Reliability under a steady load: the audit process killed, NATS restarted, Postgres
away for 30 s. Every published event must end up stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from audit_support import NATS_URL, audit_env, drop_stream, event, fresh_database, publisher, unique_root, wait_for
from support.infra import RestartableNats, free_port
from warden_common.contracts import EventRefs, events_stream_name

pytestmark = pytest.mark.slow


class AuditProcess:
    """`python -m warden_audit` as a real process (so it can be SIGKILLed)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = os.environ | env | {"WARDEN_AUDIT_HTTP__PORT": str(self.port)}
        self.token = env["WARDEN_AUDIT_ADMIN_TOKEN"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant
                [sys.executable, "-m", "warden_audit"], env=self.env, stdout=out, stderr=out
            )

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"audit exited with {self.proc.returncode}; see {self.log}")
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"{self.url}/readyz", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, timeout=30, what="audit process ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    async def readyz(self) -> dict:
        async with httpx.AsyncClient() as c:
            return (await c.get(f"{self.url}/readyz", timeout=5)).json()


class Load:
    """Publishes events at a steady rate; every event is retried until the stream has it."""

    def __init__(self, root: str, nats_url: str, rate: float) -> None:
        self.root, self.nats_url, self.rate = root, nats_url, rate
        self.published: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout=60)

    async def _run(self) -> None:
        async with publisher(self.root, self.nats_url) as bus:
            start = time.monotonic()
            i = 0
            while not self._stop.is_set():
                ev = event("call.completed", refs=EventRefs(tool="load__t", call_id=f"c{i}"), data={"i": i})
                while True:
                    try:
                        await bus.publish_event_now(ev)
                        break
                    except Exception:  # NATS away: the same id again (the stream dedups it)
                        await asyncio.sleep(0.2)
                self.published.append(ev.id)
                i += 1
                ahead = start + i / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing the load, not synchronization

    async def until(self, n: int, timeout: float = 30) -> None:
        await wait_for(lambda: _true(len(self.published) >= n), timeout=timeout, what=f"{n} events published")


async def _true(v: bool) -> bool:
    return v


async def _assert_exactly_once(dsn: str, published: list[str], timeout: float = 60) -> None:
    import asyncpg

    async def ids() -> list[str]:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": "audit"})
        try:
            return [r[0] for r in await conn.fetch("SELECT id FROM events")]
        finally:
            await conn.close()

    want = set(published)
    assert len(want) == len(published)

    async def complete() -> bool:
        return len(await ids()) >= len(want)

    await wait_for(complete, timeout=timeout, what=f"{len(want)} events stored")
    got = await ids()
    assert len(got) == len(want), f"{len(got)} rows for {len(want)} events"
    assert set(got) == want


async def _verify_ok(p: AuditProcess) -> None:
    async with httpx.AsyncClient() as c:
        rep = (await c.post(f"{p.url}/v1/verify", headers={"authorization": f"Bearer {p.token}"}, timeout=60)).json()
    assert rep["ok"], rep


@asynccontextmanager
async def audit_process(tmp_path: Path, nats_url: str, dsn: str, root: str) -> AsyncIterator[AuditProcess]:
    token = "adm-" + secrets.token_urlsafe(24)
    p = AuditProcess(audit_env(root, dsn, nats_url, token, WARDEN_AUDIT_BATCH_SIZE="200"), tmp_path / "audit.log")
    try:
        yield p
    finally:
        p.stop()


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = unique_root()
    async with fresh_database() as dsn, audit_process(tmp_path, NATS_URL, dsn, root) as audit:
        await audit.start()
        try:
            async with Load(root, NATS_URL, rate=500) as load:
                await load.until(1500)
                audit.kill()
                await load.until(2500)
                await audit.start()
                await load.until(4000)
                audit.kill()  # and once more, right after it came back
                await audit.start()
                await load.until(5000)
            await _assert_exactly_once(dsn, load.published)
            await _verify_ok(audit)
        finally:
            audit.stop()  # first: a running audit re-creates a stream that goes away
            await drop_stream(NATS_URL, events_stream_name(root))


async def _stored(p: AuditProcess) -> float:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{p.url}/metrics", timeout=5)).text
    line = next(x for x in text.splitlines() if x.startswith("warden_audit_events_stored_total "))
    return float(line.split()[1])


class TailReader:
    """A live tail (`GET /v1/tail`) on one audit process, collecting event ids."""

    def __init__(self, p: AuditProcess, tool: str) -> None:
        self.p, self.tool = p, tool
        self.ids: list[str] = []
        self.live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TailReader:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.live.wait(), timeout=15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        import json

        headers = {"authorization": f"Bearer {self.p.token}"}
        async with (
            httpx.AsyncClient(base_url=self.p.url, headers=headers, timeout=None) as c,
            c.stream("GET", "/v1/tail", params={"tool": self.tool}) as r,
        ):
            async for line in r.aiter_lines():
                if line == ": live":
                    self.live.set()
                elif line.startswith("data:"):
                    self.ids.append(json.loads(line[5:])["id"])


async def test_two_replicas_share_the_stream_one_killed_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Two audit processes on one durable consumer: both ingest (ids are claimed outside
    the chain's lock, the chain is extended one transaction at a time), one is SIGKILLed
    and comes back; every event is stored once, the chain still verifies, and a live tail
    on one replica shows every event once, those the other replica stored included."""
    root = unique_root()
    token = "adm-" + secrets.token_urlsafe(24)
    async with fresh_database() as dsn:
        env = audit_env(root, dsn, NATS_URL, token, WARDEN_AUDIT_BATCH_SIZE="200")
        a = AuditProcess(env, tmp_path / "a.log")
        b = AuditProcess(env, tmp_path / "b.log")
        try:
            await a.start()
            await b.start()
            async with TailReader(a, "load__t") as tail:
                async with Load(root, NATS_URL, rate=800) as load:
                    await load.until(2500)
                    assert await _stored(a) > 0
                    assert await _stored(b) > 0, "the second replica took no part"
                    b.kill()
                    await load.until(3500)
                    await b.start()
                    await load.until(5000)
                await _assert_exactly_once(dsn, load.published)
                await wait_for(
                    lambda: _true(len(tail.ids) >= len(load.published)), timeout=30, what="the tail caught up"
                )
                assert len(tail.ids) == len(load.published)
                assert set(tail.ids) == set(load.published)
            await _verify_ok(a)
        finally:
            a.stop()
            b.stop()
            await drop_stream(NATS_URL, events_stream_name(root))


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = RestartableNats(tmp_path / "js")
    await server.start()
    root = unique_root()
    try:
        async with fresh_database() as dsn, audit_process(tmp_path, server.url, dsn, root) as audit:
            await audit.start()
            async with Load(root, server.url, rate=500) as load:
                await load.until(1500)
                server.stop()
                await server.start()
                await load.until(3000)
                server.stop()
                await server.start()
                await load.until(4500)
            await _assert_exactly_once(dsn, load.published)
            await _verify_ok(audit)
    finally:
        server.stop()


class PgProxy:
    """A TCP proxy in front of Postgres that the test can cut and restore."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        self.writers |= {w, uw}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for t in (asyncio.create_task(pipe(r, uw)), asyncio.create_task(pipe(ur, w))):
            self.pipes.add(t)
            t.add_done_callback(self.pipes.discard)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        for t in list(self.pipes):
            t.cancel()

    async def restore(self) -> None:
        await self.start()


async def test_postgres_away_30s_pauses_ingest_then_catches_up(tmp_path: Path) -> None:
    proxy = PgProxy()
    await proxy.start()
    root = unique_root()
    try:
        async with fresh_database() as dsn:
            proxied = dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            assert proxied != dsn
            async with audit_process(tmp_path, NATS_URL, proxied, root) as audit:
                await audit.start()
                async with Load(root, NATS_URL, rate=300) as load:
                    await load.until(600)
                    await proxy.cut()

                    async def paused() -> bool:
                        try:
                            r = await audit.readyz()
                        except httpx.HTTPError:
                            return False
                        return not r["ready"] and r["checks"]["ingest"].startswith("paused")

                    await wait_for(paused, timeout=15, what="/readyz to say ingest is paused")
                    await asyncio.sleep(30)  # the scenario: the database stays away for 30 s
                    await proxy.restore()
                    await load.until(len(load.published) + 300)
                await _assert_exactly_once(dsn, load.published)
                r = await audit.readyz()
                assert r["ready"], r
                await _verify_ok(audit)
    finally:
        await proxy.cut()
        with contextlib.suppress(Exception):
            await drop_stream(NATS_URL, events_stream_name(root))
