"""A person's consent is bound to the browser that started it (issue 16, 10d): the consent URL
a user gets is Warden's `/connect/start/<nonce>`, which sets a short-lived cookie in the
browser that opens it first and sends it to the provider; the callback refuses that flow in any
other browser (an audited `connector.consent_failed`), and nothing is linked. So a user's
consent completed in someone else's browser cannot link the other person's upstream account to
the first user, and a link opened elsewhere first is refused there."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.admin import admin_client
from support.consent import (
    complete_consent,
    connectors_db,
    hit_callback,
    open_start,
    open_tokens,
    per_user_tool,
    protected_upstream,
    provider_redirect,
)
from support.infra import wait_for
from support.protected_mcp import ProtectedMcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e
ME = "/v1/me/connections"


@pytest.fixture(scope="module")
async def upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    async with protected_upstream(stack) as mcp:
        yield mcp


async def _start(stack: Stack, key: str, name: str) -> str:
    async with httpx.AsyncClient(
        base_url=stack.urls["proxy"], headers={"Authorization": f"Bearer {key}"}, timeout=30, trust_env=False
    ) as me:
        started = (await me.post(f"{ME}/{name}/consent")).json()
    url = str(started["consent_url"])
    assert url.startswith(f"{stack.urls['connectors']}/connect/start/"), url
    return url


async def test_a_consent_completed_in_another_browser_is_refused_and_links_nothing(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, alice = await per_user_tool(stack, admin, upstream, "alice", "bind")
        url = await _start(stack, alice, name)

        # mallory gets hold of the provider's URL behind alice's link (alice opened it), logs in
        # as herself, and comes back to Warden in her own browser: no binding cookie
        params = await provider_redirect(stack, url, "mallory")
        refused = await hit_callback(stack, params, jar=httpx.Cookies())
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert not body["ok"] and "browser where you started it" in body["message"]
        assert "nothing was linked" in body["message"]
        assert params["code"] not in refused.text
        assert await open_tokens(stack, name, "alice") is None  # mallory's account is not alice's
        async with connectors_db(stack) as db:
            # this connector's rows only: other tests in the shared stack connect an alice too
            linked = await db.fetchval(
                "SELECT count(*) FROM tokens t JOIN connectors c ON c.id = t.connector_id"
                " WHERE t.user_key = 'alice' AND c.name = $1",
                name,
            )
            assert linked == 0

        async def audited() -> list[dict[str, Any]]:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "connector.consent_failed", "connector": name}
            )
            return [e for e in page["items"] if (e.get("data") or {}).get("refused") == "other_browser"]

        events = await wait_for(audited, timeout=15)
        assert events[0]["refs"]["user"] == "alice" and params["code"] not in str(events)

        # the leaked flow is burnt, even in alice's own browser (its code and state are out)
        again = await hit_callback(stack, params)
        assert again.status_code == 400 and "already used" in again.json()["message"], again.text
        assert await open_tokens(stack, name, "alice") is None
        # alice starts again and completes it as herself, in her browser
        mine = await complete_consent(stack, await _start(stack, alice, name), "alice")
        assert mine.status_code == 200, mine.text
        doc = await open_tokens(stack, name, "alice")
        assert doc is not None
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}/connections")
        assert {c["user"]: c.get("account") for c in shown["connections"]}.get("alice") == "alice"


async def test_a_start_link_works_only_in_the_first_browser_that_opens_it(stack: Stack, upstream: ProtectedMcp) -> None:
    async with admin_client(stack) as admin:
        name, alice = await per_user_tool(stack, admin, upstream, "alice", "bind")
        url = await _start(stack, alice, name)

        first = httpx.Cookies()
        opened = await open_start(url, jar=first)
        assert opened.status_code == 302 and opened.headers["location"].startswith(upstream.issuer)
        cookie = opened.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/connect/" in cookie
        assert (await open_start(url, jar=first)).status_code == 302  # the same browser, again

        elsewhere = await open_start(url, jar=httpx.Cookies())
        assert elsewhere.status_code == 403
        assert "already opened in another browser" in elsewhere.json()["message"]
        assert "location" not in elsewhere.headers

        damaged = await open_start(f"{stack.urls['connectors']}/connect/start/not*a*nonce", jar=httpx.Cookies())
        unknown = await open_start(f"{stack.urls['connectors']}/connect/start/{secrets.token_urlsafe(16)}")
        assert damaged.status_code == 400 and unknown.status_code == 400
        assert "start the connection again" in unknown.json()["message"]
