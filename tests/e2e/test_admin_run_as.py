"""An admin runs a tool as a profile (and user) with the admin token (issue 16 item 27):
`POST /v1/admin/tools/{name}/call` and `warden calls run`, through the same pipeline as an
agent (the profile's grants, approvals), audited with the admin as the actor."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from support.admin import admin_client
from support.infra import NAMED_ADMINS, wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

WARDEN = str(Path(sys.executable).with_name("warden"))
ALICE = {"Authorization": f"Bearer {NAMED_ADMINS['alice']}"}
BOB = {"Authorization": f"Bearer {NAMED_ADMINS['bob']}"}


async def test_an_admin_runs_a_tool_as_a_profile_through_grants_and_approvals(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}, {"name": "fail"}])
        p = await admin.profile([f"{c}__record"])
        run = f"{stack.urls['proxy']}/v1/admin/tools/{c}__record/call"
        body = {"profile": p, "user": "u-7", "arguments": {"key": "as-alice"}}

        # the profile's approvals apply: the call is held until an admin decides
        call = asyncio.create_task(admin.http.post(run, json=body, headers=ALICE))

        async def held() -> dict[str, Any] | None:
            items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
            return next((a for a in items if a["tool"] == f"{c}__record" and a["profile"] == p), None)

        pending = await wait_for(held, timeout=15)
        assert "as-alice" not in up.trouble.executions
        await admin.req("POST", "proxy", f"/v1/approvals/{pending['id']}/approve", json={}, headers=BOB)
        answer = await asyncio.wait_for(call, 30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["content"][0]["text"] == "as-alice:1" and not answer.json()["is_error"]

        # the profile's grants apply: a tool it is not granted is refused, upstream untouched
        refused = await admin.http.post(
            f"{stack.urls['proxy']}/v1/admin/tools/{c}__fail/call",
            json={"profile": p, "arguments": {"reason": "x"}},
            headers=ALICE,
        )
        assert refused.status_code in (403, 404), refused.text
        # only the admin token: an agent key of the profile may not use the admin route
        key = await admin.key(p)
        agent_try = await admin.http.post(run, json=body, headers={"Authorization": f"Bearer {key}"})
        assert agent_try.status_code == 401, agent_try.text
        bad = await admin.http.post(run, json={"arguments": {}}, headers=ALICE)
        assert bad.status_code == 400 and "profile" in bad.text

        async def audited() -> list[dict[str, Any]] | None:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.*", "tool": f"{c}__record", "actor": "admin:alice"}
            )
            types = {e["type"] for e in page["items"]}
            return page["items"] if {"call.requested", "call.completed"} <= types else None

        events = await wait_for(audited, timeout=15)
        assert all(e["refs"]["profile"] == p and e["refs"]["user"] == "u-7" for e in events), events


async def test_warden_calls_run_prints_the_result(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "typed", "auto_approve": True}])
        p = await admin.profile([f"{c}__typed"])
        environ = {**os.environ, "WARDEN_PROXY_URL": stack.urls["proxy"], "WARDEN_ADMIN_TOKEN": NAMED_ADMINS["alice"]}
        args = json.dumps({"count": 2, "label": "ab"})
        proc = await asyncio.create_subprocess_exec(
            WARDEN, "calls", "run", f"{c}__typed", "--profile", p, "--args", args,
            env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "abx2"
        proc = await asyncio.create_subprocess_exec(
            WARDEN, "calls", "run", f"{c}__typed", "--profile", p, "--args", "[1]",
            env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2 and "JSON object" in err.decode()
