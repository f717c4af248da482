"""The audit actor of a NATS call is the NATS user the call's subject names (the server lets
each internal user publish only on its own: libs/cli/tests/test_nats_permissions.py), never
what the caller claims in a `Warden-Caller` header; a claimed end user is recorded only as
the user acted for, and only from the services `WARDEN_PROXY_ACT_FOR_USERS` lists (issue 16
item 11b)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.admin import admin_client
from support.infra import wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.contracts import ToolCall, calls_subject
from warden_common.errors import Forbidden

pytestmark = pytest.mark.e2e

TRUSTED = "trusted-svc"  # listed in WARDEN_PROXY_ACT_FOR_USERS by the test stack (tests/conftest.py)


async def _actors(admin: Any, call_key: str) -> list[tuple[dict[str, Any], str | None]]:
    page = await admin.req("GET", "audit", "/v1/events", params={"type": "call.completed", "limit": 200})
    return [
        (e["actor"], e["refs"].get("user"))
        for e in page["items"]
        if call_key in json.dumps(e["data"])  # the call's arguments (and result) carry the key
    ]


async def test_the_actor_of_a_nats_call_is_its_nats_user_not_what_it_claims(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        # a service that claims to be the admin, and to act for the CEO
        async with WardenClient(
            nats_url=nats_url, profile=p, root=stack.cfg.root, user="billing-svc", caller="admin"
        ) as warden:
            with pytest.raises(Forbidden) as e:
                await warden.call(tool, {"key": "as-ceo"}, user="ceo@example.com")
            assert "WARDEN_PROXY_ACT_FOR_USERS" in e.value.message
            with pytest.raises(Forbidden):
                await warden.call_durable(tool, {"key": "as-ceo-d"}, idempotency_key="as-ceo-d", user="ceo@example.com")
            assert "as-ceo" not in up.trouble.executions and "as-ceo-d" not in up.trouble.executions
            assert (await warden.call(tool, {"key": "billing-1"})).content[0]["text"] == "billing-1:1"
            r = await warden.call_durable(tool, {"key": "billing-d"}, idempotency_key="billing-d")
            assert r.content[0]["text"] == "billing-d:1"
        # a service the proxy lets act for users
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root, user=TRUSTED, caller="admin") as w:
            r = await w.call(tool, {"key": "trusted-1"}, user="ceo@example.com")
            assert r.content[0]["text"] == "trusted-1:1"
        # an older client on the subject without a user: "a service of this profile", whatever it says
        raw = await WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root).__aenter__()
        try:
            body = ToolCall(tool=tool, arguments={"key": "legacy-1"}).model_dump_json().encode()
            reply = await raw.nc.request(
                calls_subject(stack.cfg.root, p), body, timeout=30, headers={"Warden-Caller": "admin"}
            )
            assert b"legacy-1:1" in reply.data
            body = (
                ToolCall(tool=tool, arguments={"key": "legacy-ceo"}, user="ceo@example.com").model_dump_json().encode()
            )
            reply = await raw.nc.request(calls_subject(stack.cfg.root, p), body, timeout=30)
            assert b'"forbidden"' in reply.data
        finally:
            await raw.close()

        async def audited() -> Any:
            got = {k: await _actors(admin, k) for k in ("billing-1", "billing-d", "trusted-1", "legacy-1")}
            return got if all(got.values()) else None

        got = await wait_for(audited, timeout=20)
        assert got["billing-1"] == [({"kind": "service", "id": "billing-svc"}, None)]
        assert got["billing-d"] == [({"kind": "service", "id": "billing-svc"}, None)]
        assert got["trusted-1"] == [({"kind": "service", "id": TRUSTED}, "ceo@example.com")]
        assert got["legacy-1"] == [({"kind": "service", "id": f"profile:{p}"}, None)]
