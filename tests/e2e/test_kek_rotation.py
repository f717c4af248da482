"""KEK rotation end to end: records sealed under key A (a static secret, OAuth tokens and the
DCR client of a real oidc-provider), rotate to [B, A], `warden connectors rewrap` (resumable,
with progress), then drop A: everything still opens, and a refresh still authenticates the
client with its re-wrapped secret."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.admin import admin_client
from support.connectors import connect_and_expose, credential, idp
from support.consent import open_tokens
from support.infra import isolated_stack
from support.upstream import header_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def own_stack(nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A stack of its own: this test restarts its connectors service with other keys."""
    async with isolated_stack(nats_url, admin_dsn, Path(tmp_path_factory.mktemp("kek"))) as st:
        yield st


async def _restart_connectors(st: Stack, keys: str) -> None:
    proc = next(p for p in st.procs if p.name == "connectors" and p.popen.poll() is None)
    os.killpg(proc.popen.pid, signal.SIGTERM)
    await asyncio.to_thread(proc.popen.wait, 20)
    st.procs.remove(proc)
    st.crypto_keys = keys
    st.start_service("connectors")
    await st.wait_ready(["connectors"])


async def _cli(st: Stack, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "WARDEN_CONNECTORS_URL": st.urls["connectors"],
        "WARDEN_ADMIN_TOKEN": st.admin_token,
        "COLUMNS": "300",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden_connectors.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        so, se = await proc.communicate()
    return proc.returncode or 0, so.decode() + se.decode()


async def test_seal_under_a_rotate_rewrap_then_drop_a_and_everything_still_opens(own_stack: Stack) -> None:
    st = own_stack
    key_a = st.crypto_keys
    kid_a = key_a.split(":", 1)[0]
    key_b = f"kb:{base64.b64encode(os.urandom(32)).decode()}"
    secret = "static-" + "s" * 24
    async with (
        idp(st) as env,
        header_upstream(lambda h: h.get(b"authorization") == f"Bearer {secret}".encode()) as (url, _),
        admin_client(st) as admin,
    ):
        static = await admin.connector(url, secret)  # connectors.secret_sealed
        oauth, _key = await connect_and_expose(st, admin, env, "kim")  # tokens + oauth_clients (DCR secret)
        before = await admin.req("GET", "connectors", "/v1/keys")
        assert before["active_key"] == kid_a and before["old_key_records"] == 0
        sealed = before["records"]
        assert sealed >= 3 and before["by_key"] == {kid_a: sealed}

        # rotate: B first, A kept to open what it sealed
        await _restart_connectors(st, f"{key_b},{key_a}")
        rotated = await admin.req("GET", "connectors", "/v1/keys")
        assert rotated["active_key"] == "kb" and rotated["old_key_records"] == sealed
        code, output = await _cli(st, "rewrap", "--status")
        assert code == 1 and f"{sealed} records still use an old key" in output

        # one batch by hand, then the CLI resumes from there, in batches of one
        first = await admin.req("POST", "connectors", "/v1/keys/rewrap", params={"batch": 1})
        assert first["rewrapped"] == 1 and first["old_key_records"] == sealed - 1
        code, output = await _cli(st, "rewrap", "--batch", "1")
        assert code == 0, output
        assert f"re-wrapped {sealed - 1}/{sealed - 1}; 0 left under an old key" in output
        assert "every record is under the active key kb; the old keys" in output
        assert secret not in output

        # drop A: every record still opens
        await _restart_connectors(st, key_b)
        after = await admin.req("GET", "connectors", "/v1/keys")
        assert after["by_key"] == {"kb": sealed} and after["unconfigured_key_records"] == 0 and after["done"]
        assert (await credential(st, static)).headers["Authorization"] == f"Bearer {secret}"
        held = await open_tokens(st, oauth)
        assert held is not None
        got = await credential(st, oauth)
        assert got.headers["Authorization"] == f"Bearer {held['access_token']}"
        # a forced refresh opens the re-wrapped client registration (its DCR secret) and the
        # refresh token, and seals the new tokens under B
        refreshed = await credential(st, oauth, force=True)
        assert refreshed.headers["Authorization"] != got.headers["Authorization"]
        final: dict[str, Any] = await admin.req("GET", "connectors", "/v1/keys")
        assert set(final["by_key"]) == {"kb"}
