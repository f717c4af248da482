"""Contracts grow by optional fields (STYLE): during a rolling upgrade an older replica gets
messages from a newer one. Every handler of every service, and audit's event ingest, accept a
v1 message with a field they do not know — they answer it as they answer the same message
without that field, never `invalid`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import nats
import pytest
from support.infra import wait_for
from warden_cli.embedded import Stack
from warden_common.contracts import (
    CREDENTIALS_GET,
    REGISTRY_CONNECTORS,
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    UPSTREAM_LIST_TOOLS,
    calls_subject,
    durable_status_subject,
)
from warden_common.contracts.credentials import (
    CONNECTIONS_CONSENT,
    CONNECTIONS_DISCONNECT,
    CONNECTIONS_GET,
    CONNECTIONS_LIST,
)

pytestmark = pytest.mark.e2e

FUTURE = {"a_field_from_v1_7": {"nested": [1, 2]}, "another": "x"}


def _requests(root: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (REGISTRY_VISIBLE.on(root), {"profile": "nobody"}),
        (REGISTRY_RESOLVE.on(root), {"profile": "nobody", "tool": "x__y"}),
        (REGISTRY_SEARCH.on(root), {"profile": "nobody", "query": "notes"}),
        (REGISTRY_CONNECTORS.on(root), {"profile": "nobody"}),
        (CREDENTIALS_GET.on(root), {"connector": "nothing-here"}),
        (CONNECTIONS_LIST.on(root), {"user": "u1"}),
        (CONNECTIONS_GET.on(root), {"user": "u1", "connector": "nothing-here"}),
        (CONNECTIONS_CONSENT.on(root), {"user": "u1", "connector": "nothing-here"}),
        (CONNECTIONS_DISCONNECT.on(root), {"user": "u1", "connector": "nothing-here"}),
        (UPSTREAM_LIST_TOOLS.on(root), {"connector": "nothing-here"}),
        (calls_subject(root, "nobody"), {"tool": "x__y", "arguments": {}}),
        (durable_status_subject(root, "nobody"), {"idempotency_key": "k-1"}),
    ]


async def test_every_handler_accepts_a_message_with_an_unknown_field(stack: Stack, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        for subject, body in _requests(stack.cfg.root):
            plain = json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=10)).data)
            grown = json.loads((await nc.request(subject, json.dumps({**body, **FUTURE}).encode(), timeout=10)).data)
            assert (grown.get("error") or {}).get("code") != "invalid", (subject, grown)
            # answered as the same message without the new field is answered
            assert ("error" in grown) == ("error" in plain), (subject, plain, grown)
            if "error" in plain:
                assert grown["error"]["code"] == plain["error"]["code"], (subject, plain, grown)
    finally:
        await nc.close()


async def test_audit_stores_an_event_with_unknown_fields(stack: Stack, nats_url: str) -> None:
    tag = uuid.uuid4().hex[:12]
    ev = {
        "id": "ev" + tag,
        "type": "call.completed",
        "source": "proxy",
        "time": "2026-12-02T10:00:00Z",
        "refs": {"tool": f"grow__{tag}", "connector_generation": 3},
        "actor": {"kind": "agent", "id": "a1", "acting_for": "u1"},
        "priority": "high",
        "data": {},
    }
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            f"{stack.cfg.root}.v1.events.proxy.call.completed",
            json.dumps(ev).encode(),
            headers={"Nats-Msg-Id": ev["id"]},
        )
    finally:
        await nc.close()
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.urls["audit"], headers=admin, timeout=10) as http:

        async def stored() -> Any:
            r = await http.get("/v1/events", params={"tool": f"grow__{tag}"})
            return r.status_code == 200 and r.json()["items"]

        items = await wait_for(stored, timeout=20)
    assert items[0]["id"] == ev["id"]
