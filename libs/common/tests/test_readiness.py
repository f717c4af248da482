"""Readiness asks NATS for a real round trip: a hung server (SIGSTOP: the socket stays open,
nothing answers) makes /readyz 503; when it runs again (SIGCONT) /readyz is 200 again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from support.infra import RestartableNats, unique_root, wait_for
from warden_common.bus import Bus
from warden_common.contracts import Service
from warden_common.db import Database
from warden_common.runtime import Runtime
from warden_common.settings import NatsSettings, PostgresSettings
from warden_common.web import ops_router


async def test_readyz_fails_while_nats_is_hung_and_recovers(tmp_path: Path, dsn: str) -> None:
    server = RestartableNats(tmp_path / "js")
    await server.start()
    assert server.proc is not None
    rt = Runtime(
        service=Service.proxy,
        db=Database(PostgresSettings(dsn=SecretStr(dsn)), "readytest"),
        bus=Bus(NatsSettings(url=server.url, root=unique_root()), Service.proxy),
    )
    app = FastAPI()
    app.include_router(ops_router(rt.checks()))
    stopped = False
    try:
        await rt.start("migpkg")
        rt.ready = True
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:

            async def status(code: int) -> httpx.Response | None:
                r = await http.get("/readyz")
                return r if r.status_code == code else None

            r = await wait_for(lambda: status(200), timeout=10)
            assert r.json()["checks"]["nats"] == "ok"

            os.kill(server.proc.pid, signal.SIGSTOP)
            stopped = True
            assert rt.bus.connected  # the flag alone would still say ready
            r = await wait_for(lambda: status(503), timeout=15)
            assert "no answer from NATS" in r.json()["checks"]["nats"]

            os.kill(server.proc.pid, signal.SIGCONT)
            stopped = False
            r = await wait_for(lambda: status(200), timeout=15)
            assert r.json()["checks"]["nats"] == "ok"
            # the connection still works after the late PONGs
            async with asyncio.timeout(10):
                await rt.bus._nc.flush(timeout=5)
            metrics = (await http.get("/metrics")).text
            assert "warden_nats_rtt_seconds " in metrics
    finally:
        if stopped:
            os.kill(server.proc.pid, signal.SIGCONT)
        await rt.stop()
        server.stop()
