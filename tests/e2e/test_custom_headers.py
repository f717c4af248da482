"""Headers an admin configures (custom_headers, api_key, oauth2 extra_headers, jwt_passthrough)
are validated against one list (warden_common.contracts.credentials.RESERVED_HEADERS): hop-by-hop
and transport headers are refused with the reason; `Authorization` is a custom header like any
other (sent as given), and refused where it would be dropped (oauth2 extra headers)."""

from __future__ import annotations

import httpx
import pytest
from support.admin import admin_client
from support.upstream import header_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


async def _create(admin_http: httpx.AsyncClient, stack: Stack, name: str, auth: dict) -> httpx.Response:
    return await admin_http.post(
        f"{stack.urls['connectors']}/v1/connectors",
        json={"name": name, "url": "https://mcp.example.com/mcp", "auth": auth},
    )


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        ({"type": "custom_headers", "headers": {"Keep-Alive": "timeout=5"}}, "hop-by-hop"),
        ({"type": "custom_headers", "headers": {"Upgrade": "h2c"}}, "hop-by-hop"),
        ({"type": "custom_headers", "headers": {"Proxy-Authorization": "Basic eA=="}}, "hop-by-hop"),
        ({"type": "custom_headers", "headers": {"Content-Length": "0"}}, "transport"),
        ({"type": "custom_headers", "headers": {"MCP-Protocol-Version": "2020-01-01"}}, "transport"),
        ({"type": "custom_headers", "headers": {"X-Team": "a", "x-team": "b"}}, "twice"),
        ({"type": "api_key", "header": "Host", "key": "secret-key-value"}, "transport"),
        ({"type": "oauth2", "extra_headers": {"Host": "evil.example"}}, "transport"),
        ({"type": "oauth2", "extra_headers": {"Authorization": "Bearer secret-key-value"}}, "access token"),
        ({"type": "oauth2", "extra_headers": {"X-Bad": "a\r\nInjected: 1"}}, "single-line"),
    ],
)
async def test_reserved_and_hop_by_hop_headers_are_refused_with_the_reason(
    stack: Stack, auth: dict, reason: str
) -> None:
    async with admin_client(stack) as admin:
        r = await _create(admin.http, stack, "hdrbad", auth)
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert reason in message
        assert "secret-key-value" not in r.text and "Basic eA==" not in r.text
        # nothing half-created
        assert (await admin.http.get(f"{stack.urls['connectors']}/v1/connectors/hdrbad")).status_code == 404


async def test_authorization_as_a_custom_header_reaches_the_upstream_as_given(stack: Stack) -> None:
    value = "Token abc-" + "z" * 20

    async with (
        header_upstream(lambda h: h.get(b"authorization") == value.encode()) as (url, gate),
        admin_client(stack) as admin,
    ):
        c = await admin.connector(url, None)
        await admin.req(
            "PATCH",
            "connectors",
            f"/v1/connectors/{c}",
            json={"auth": {"type": "custom_headers", "headers": {"Authorization": value, "X-Team": "blue"}}},
        )
        await admin.register(c, [{"name": "echo"}])
        key = await admin.key(await admin.profile([f"{c}__echo"]))
        async with httpx.AsyncClient(timeout=30) as h:
            r = await h.post(
                f"{stack.urls['proxy']}/v1/tools/{c}__echo/call",
                json={"arguments": {"text": "via custom authorization"}},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "via custom authorization"
        assert gate.seen and all(s.get(b"authorization") == value.encode() for s in gate.seen)
        assert all(s.get(b"x-team") == b"blue" for s in gate.seen)
        assert value not in r.text and value not in "".join(admin.responses)
