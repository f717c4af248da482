"""A held call asks the user at the calling client when it can show forms (MCP form
elicitation): their answer approves or rejects it (the first decision wins, theirs or an
admin's), is audited as theirs, and the upstream runs only after an approval."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import types
from support.admin import admin_client, agent
from support.infra import wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


async def test_the_user_at_the_client_approves_or_rejects_a_held_call(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": p, "user": "uma"})
        asked: list[str] = []
        answers = iter([{"approve": True}, {"approve": False, "reason": "not that one"}])

        async def on_elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content=next(answers))

        async with agent(stack, str(key["key"]), elicitation_callback=on_elicit, mode="legacy") as client:
            ok = await client.call_tool(f"{c}__record", {"key": "yes"})
            no = await client.call_tool(f"{c}__record", {"key": "nope"})
        assert not ok.is_error and ok.content[0].text == "yes:1"  # type: ignore[union-attr]
        assert no.is_error and "not that one" in no.content[0].text  # type: ignore[union-attr]
        assert len(asked) == 2 and f"{c}__record" in asked[0] and '"yes"' in asked[0]
        assert "nope" not in up.trouble.executions  # rejected: the upstream never ran

        async def audited() -> bool:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.approved", "tool": f"{c}__record"}
            )
            return any(e["actor"] == {"kind": "user", "id": "uma"} for e in page["items"])

        assert await wait_for(audited, timeout=10)
        pending = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
        assert all(a["tool"] != f"{c}__record" for a in pending)  # both decided, none left waiting
