"""`warden connectors add` and `reconnect` against the whole stack and a real authorization
server (oidc-provider): the CLI runs as a process, a person's browser is played by the test.

Issue 16 items 18 and 19: a reconnect from `error` waits for the new consent instead of
exiting with the old reason; a refused re-consent ends the wait at once with its reason; a
refused `add` leaves nothing behind, so the retry is not a 409; refusals name what was refused."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.admin import Admin, admin_client
from support.connectors import Idp, add_oauth, idp
from support.consent import complete_consent
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

WARDEN = str(Path(sys.executable).with_name("warden"))


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


class Cli:
    """`warden connectors ...` as a child process; its consent URL read from its output."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def consent_url(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, f"the CLI ended without a consent URL: {self.lines}"
                self.lines.append(line)
                if line.startswith("http"):
                    return line.strip()

    async def result(self) -> tuple[int, str]:
        async with asyncio.timeout(90):  # well inside --wait-timeout: the wait must end on its own
            rest, errors = await self.proc.communicate()
        return int(self.proc.returncode or 0), "".join(self.lines) + rest.decode() + errors.decode()


async def _cli(stack: Stack, *args: str) -> Cli:
    environ = {
        **os.environ,
        "WARDEN_CONNECTORS_URL": stack.urls["connectors"],
        "WARDEN_ADMIN_TOKEN": stack.admin_token,
        "COLUMNS": "400",
    }
    proc = await asyncio.create_subprocess_exec(
        WARDEN, "connectors", *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    return Cli(proc)


async def _denied(stack: Stack, admin: Admin, env: Idp) -> str:
    view = await add_oauth(admin, env.mcp.url)
    assert (await complete_consent(stack, view["consent_url"], "deny")).status_code == 403
    shown = await admin.req("GET", "connectors", f"/v1/connectors/{view['name']}")
    assert shown["status"] == "error" and "denied" in shown["status_reason"]
    return str(view["name"])


async def test_reconnect_from_error_waits_for_the_new_consent(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name = await _denied(stack, admin, env)
        cli = await _cli(stack, "reconnect", name, "--wait-timeout", "300")
        url = await cli.consent_url()  # today: exits 1 at once with the old "denied"
        assert (await complete_consent(stack, url, "rosa")).status_code == 200
        rc, text = await cli.result()
        assert rc == 0 and f"{name} is connected" in text, text
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert shown["status"] == "active" and "last_consent_failure" not in shown["oauth"]


async def test_a_refused_reconnect_ends_the_wait_with_its_reason(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        view = await add_oauth(admin, env.mcp.url)
        name = view["name"]
        assert (await complete_consent(stack, view["consent_url"], "ines")).status_code == 200
        cli = await _cli(stack, "reconnect", name, "--wait-timeout", "300")
        url = await cli.consent_url()
        assert (await complete_consent(stack, url, "deny")).status_code == 403
        rc, text = await cli.result()  # today: only when the 300 s wait times out (exit 3)
        assert rc == 1 and "refused" in text and "denied" in text, text
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        # the connection held before the refused re-consent keeps working, and show says why
        assert shown["status"] == "active" and "denied" in shown["oauth"]["last_consent_failure"]["reason"]


async def test_a_refused_add_leaves_nothing_and_the_retry_succeeds(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name = "o" + secrets.token_hex(4)
        base = {"name": name, "url": env.mcp.url}
        for auth, where in (
            ({"issuer": "http://10.0.0.1/"}, "the issuer"),
            ({"issuer": env.op.issuer, "token_endpoint": "http://192.168.1.1/token"}, "the token endpoint of"),
        ):
            r = await admin.http.post(
                f"{stack.urls['connectors']}/v1/connectors?authorize=true",
                json={**base, "auth": {"type": "oauth2", **auth}},
            )
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert message.startswith(f"refused {where}") and "hosts the admin lists" not in message, message
            gone = await admin.http.get(f"{stack.urls['connectors']}/v1/connectors/{name}")
            assert gone.status_code == 404, gone.text  # today: a half-made `pending` connector
        cli = await _cli(stack, "add", "--name", name, "--mcp-server-url", env.mcp.url, "--wait-timeout", "300")
        url = await cli.consent_url()  # today: 409, the name is taken by the failed add
        assert (await complete_consent(stack, url, "olga")).status_code == 200
        rc, text = await cli.result()
        assert rc == 0 and f"{name} is connected" in text, text
