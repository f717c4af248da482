"""`WardenClient` fails fast with the real reason (issue 14): against a real nats-server with
users, a wrong password, a closed port and a subject the user may not publish on each raise
their typed error at once, well before the client's (long) timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.infra import wait_tcp
from warden_client import WardenClient
from warden_common.errors import Forbidden, Unauthorized, Unavailable
from warden_common.natsauth import SERVICE_USERS, users

USER, PROFILE, PASSWORD = "billing-svc", "billing", "right-password-5d1e"
LONG = 60.0  # the client's timeout: a fail-fast error comes long before it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    passwords = {u: f"pw-{u}" for u in SERVICE_USERS} | {USER: PASSWORD}
    conf = tmp_path / "nats.conf"
    conf.write_text(
        json.dumps(
            {"listen": f"127.0.0.1:{port}", "authorization": {"users": users("warden", passwords, {USER: PROFILE})}}
        )
    )
    binary = Path(sys.executable).parent / "nats-server"
    proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_tcp(port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_wrong_password_is_unauthorized_at_once(server: str) -> None:
    client = WardenClient(nats_url=server, profile=PROFILE, user=USER, password="wrong", timeout_s=LONG)
    async with asyncio.timeout(20):
        with pytest.raises(Unauthorized) as err:
            await client.connect()
    msg = str(err.value)
    assert USER in msg and server.removeprefix("nats://") in msg and "password" in msg
    assert "wrong" not in msg.replace("wrong user name", "")  # the password tried is not echoed


async def test_a_closed_port_is_unavailable_at_once() -> None:
    port = _free_port()  # nothing listens here
    client = WardenClient(nats_url=f"nats://127.0.0.1:{port}", profile=PROFILE, timeout_s=LONG)
    async with asyncio.timeout(20):
        with pytest.raises(Unavailable) as err:
            await client.connect()
    assert str(err.value) == f"cannot reach NATS at 127.0.0.1:{port} (connection refused)"


async def test_a_credential_in_the_url_is_not_in_the_error() -> None:
    port = _free_port()
    client = WardenClient(nats_url=f"nats://{USER}:{PASSWORD}@127.0.0.1:{port}", profile=PROFILE, timeout_s=LONG)
    async with asyncio.timeout(20):
        with pytest.raises(Unavailable) as err:
            await client.connect()
    assert PASSWORD not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


async def test_calling_another_profile_is_forbidden_at_once(server: str) -> None:
    async with WardenClient(
        nats_url=server, profile="admin-tools", user=USER, password=PASSWORD, timeout_s=LONG
    ) as warden:
        async with asyncio.timeout(20):
            with pytest.raises(Forbidden) as err:
                await warden.call("notion__search", {"query": "x"})
        msg = str(err.value)
        assert "warden.v1.calls.admin-tools.billing-svc" in msg and USER in msg and "publish" in msg
        assert err.value.details == {"subject": "warden.v1.calls.admin-tools.billing-svc", "nats_user": USER}
        # the connection stays usable, and nothing is left watching
        assert warden.nc.is_connected and warden._watching == {}


async def test_a_durable_call_on_another_profile_is_forbidden_at_once(server: str) -> None:
    async with WardenClient(
        nats_url=server, profile="admin-tools", user=USER, password=PASSWORD, timeout_s=LONG
    ) as warden:
        async with asyncio.timeout(20):
            with pytest.raises(Forbidden) as err:
                await warden.call_durable("notion__search", {}, idempotency_key="k-1")
        assert "admin-tools" in str(err.value) and USER in str(err.value)
        assert warden._watching == {}
