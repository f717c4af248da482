"""The embedded run's dev setting lets the proxy reach loopback upstreams over http, and nothing
more: link-local (cloud metadata), private and reserved addresses stay refused (issue 16 item 19b)."""

from __future__ import annotations

import pytest
from support.admin import admin_client
from support.upstream import header_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/mcp", "link-local"),
        ("http://[fd00:ec2::254]/mcp", "private"),
        ("http://10.0.0.7:8080/mcp", "private"),
        ("http://[::ffff:169.254.169.254]/mcp", "private"),  # its IPv4-mapped form too
    ],
)
async def test_the_dev_setting_still_refuses_metadata_and_private_addresses(stack: Stack, url: str, why: str) -> None:
    async with admin_client(stack) as admin:
        c = await admin.connector(url, None)
        r = await admin.http.post(f"{stack.urls['registry']}/v1/connectors/{c}/discover")
        assert r.status_code >= 400, r.text
        message = r.json()["error"]["message"]
        assert why in message and "Warden only connects to public addresses" in message, message


async def test_the_dev_setting_reaches_a_loopback_upstream_over_http(stack: Stack) -> None:
    async with header_upstream(lambda h: True) as (url, _), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        assert "echo" in str(await admin.req("POST", "registry", f"/v1/connectors/{c}/discover"))


async def test_strict_guards_refuse_a_loopback_http_upstream(nats_url: str, admin_dsn: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What `warden run --strict` sets (both dev settings off): even loopback over http is refused."""
    from support.infra import isolated_stack

    strict = {
        "proxy": {"WARDEN_PROXY_ALLOW_INSECURE_UPSTREAMS": "false"},
        "connectors": {"WARDEN_CONNECTORS_ALLOW_INSECURE_URLS": "false"},
    }
    async with isolated_stack(nats_url, admin_dsn, tmp_path, strict) as st, admin_client(st) as admin:
        r = await admin.http.post(
            f"{st.urls['connectors']}/v1/connectors",
            json={"name": "loop", "url": "http://127.0.0.1:9/mcp", "auth": {"type": "none"}},
        )
        assert r.status_code == 400 and "https" in r.json()["error"]["message"]
